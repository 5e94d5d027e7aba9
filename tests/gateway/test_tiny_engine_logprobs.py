"""Logprobs from the real engine over HTTP: tokens outside the top-p nucleus have
probability 0 and come back as OpenAI's -9999.0, never as a non-JSON -inf (tiny-random)."""


def test_top_p_truncated_logprobs_are_valid_json(make_live, tiny_engine):
    lv = make_live(engine=tiny_engine, model="tiny-random")
    client = lv.client()
    kw = dict(model="tiny-random", messages=[{"role": "user", "content": "hello"}],
              max_tokens=4, temperature=0.2, top_p=0.5, logprobs=True, top_logprobs=20, seed=1)
    r = client.chat.completions.create(**kw)
    tops = [t.logprob for tok in r.choices[0].logprobs.content for t in tok.top_logprobs]
    assert len(tops) == 80 and -9999.0 in tops and max(tops) <= 0
    chunks = list(client.chat.completions.create(stream=True, **kw))
    streamed = [t.logprob for c in chunks if c.choices and c.choices[0].logprobs
                for tok in c.choices[0].logprobs.content for t in tok.top_logprobs]
    assert streamed == tops
