"""Hand-written material of the benign personas (never drawn from the attack's pools:
harvest/prompts.py and data/seed_tasks.jsonl belong to the attacker).

Each list is combined with others at random, so a persona's prompts vary the way one user's
do: the same project, the same product, the same subjects, in different words.
"""

from __future__ import annotations

DEV_STACKS = ["a Django app", "our Go microservice", "a React dashboard", "a Rust CLI tool",
              "the Kotlin Android client", "a FastAPI backend", "a Terraform module",
              "our Spark ETL job", "a Node.js webhook handler", "the C++ game engine"]
DEV_OPENERS = [
    "I'm getting {err} in {stack} when I {action}. Here's the relevant snippet:\n\n{code}\n\n"
    "Any idea what's wrong?",
    "How should I structure {thing} in {stack}? Right now everything lives in one file.",
    "Can you review this function from {stack}? It feels slow.\n\n{code}",
    "What's the idiomatic way to {action} in {stack}?",
    "My tests for {stack} are flaky on CI but pass locally. They {action}. Where do I start?",
    "Write a small helper for {stack} that will {action}, with error handling.",
]
DEV_ERRORS = ["a KeyError on 'user_id'", "a nil pointer dereference", "'Cannot read properties "
              "of undefined'", "a deadlock", "a 502 from the load balancer", "an OOM kill",
              "a borrow checker error", "a migration conflict", "a CORS error", "a timeout"]
DEV_ACTIONS = ["parse the config file", "retry failed HTTP calls", "paginate the results",
               "cache the session lookup", "stream a large CSV upload", "debounce the search box",
               "rotate the log files", "validate the request body", "batch the DB writes",
               "mock the payment client"]
DEV_THINGS = ["the settings", "the database layer", "error handling", "the auth middleware",
              "background jobs", "feature flags"]
DEV_CODE = ["def load(path):\n    with open(path) as f:\n        return json.load(f)['items']",
            "for i in range(len(rows)):\n    if rows[i].id in seen: continue\n"
            "    out.append(rows[i])",
            "func (s *Server) Handle(w http.ResponseWriter, r *http.Request) {\n  s.mu.Lock()\n  "
            "defer s.mu.Unlock()\n  data := s.cache[r.URL.Path]\n}",
            "const res = await fetch(url); const body = res.json(); setItems(body.items);",
            "let v: Vec<_> = input.lines().map(|l| l.parse::<u32>().unwrap()).collect();",
            "SELECT * FROM orders o JOIN users u ON u.id = o.user_id WHERE o.created > now() - "
            "interval '1 day';"]
DEV_FOLLOWUPS = ["That didn't fix it; now I get {err}.", "Thanks! How would I test that?",
                 "Can you make it work with the older version too?", "Why is that faster?",
                 "ok and what about when the list is empty", "Could you explain the second part "
                 "again? I'm not following.",
                 "Great, that worked. One more thing: how do I {action}?",
                 "Can you shorten it?"]

STUDENT_SUBJECTS = {
    "biology": ["why do cells need mitochondria", "what osmosis has to do with wilting lettuce",
                "how vaccines train the immune system", "the difference between DNA and RNA"],
    "history": ["causes of the French Revolution", "why the Roman Republic became an empire",
                "what the Marshall Plan did", "how the printing press changed Europe"],
    "maths": ["how to solve 3x + 7 = 22", "what a derivative means on a graph",
              "why the angles of a triangle add up to 180", "how to find the median of 4, 9, 1, 7"],
    "chemistry": ["how to balance H2 + O2 -> H2O", "what makes an acid strong",
                  "why ice floats", "what a mole is in chemistry"],
    "literature": ["the themes of Of Mice and Men", "what an unreliable narrator is",
                   "the symbolism of the green light in Gatsby", "how to analyse a sonnet"],
    "physics": ["why the sky is blue", "what Newton's third law says about rockets",
                "how a transformer steps voltage down", "what half-life means"],
}
STUDENT_FRAMES = ["hey can u explain {q}? my teacher went too fast",
                  "I have a test tomorrow on {q}, can you help me understand it",
                  "{q}?? I don't get it", "Can you check my answer about {q}? I said it's "
                  "basically random", "explain {q} like I'm 12 pls",
                  "for my essay I need to talk about {q}. where should I start?"]
STUDENT_FOLLOWUPS = ["can you give an example?", "wait why though", "ok thanks!! one more: {q}",
                     "is that on the AP exam usually?", "can you make it shorter, I need to "
                     "write it in my own words"]

WRITER_PROJECTS = ["my fantasy novel about a lighthouse keeper", "a short story set on a night "
                   "train", "my memoir chapter about my grandmother's bakery", "a sci-fi "
                   "screenplay about a mining colony", "a children's picture book about a lost "
                   "umbrella", "my cozy mystery's second act"]
WRITER_ASKS = ["Can you help me punch up the opening paragraph of {p}? It feels flat.",
               "Suggest five names for the antagonist in {p}.",
               "I'm stuck on the dialogue in {p} where the sisters argue. Write a draft I can "
               "rework.", "Rewrite this in a warmer tone for {p}: 'She left without a word.'",
               "What's a good twist for {p} that doesn't feel cheap?",
               "Describe a rainy harbour at dusk for {p}, in about 150 words."]
WRITER_FOLLOWUPS = ["Less purple, please.", "I like the third one. Can you expand it?",
                    "Make it funnier.", "Now in first person.", "Shorter, and end on a question."]

SUPPORT_PRODUCTS = {
    "Acme Router X2": ["my wifi keeps dropping every hour", "how do I reset the admin password",
                       "the orange light is blinking", "can I set up a guest network",
                       "firmware update failed at 80%", "how do I forward port 25565"],
    "Nimbus Cloud Drive": ["my files aren't syncing on my laptop", "how do I share a folder "
                           "with read-only access", "I got charged twice this month",
                           "can I recover a file I deleted last week", "the app says storage "
                           "full but I have space", "how to turn on two-factor login"],
}
SUPPORT_STYLES = ["{q}", "hi, {q}", "{q}. please help asap", "Hello. {q}. Thanks.",
                  "{q} ??", "i have a question, {q}"]
SUPPORT_FOLLOWUPS = ["that didn't work", "ok where is that setting?", "thanks, fixed!",
                     "can I talk to a human", "it says error 0x12 now"]

EVAL_SUBJECTS = ["anatomy", "astronomy", "econometrics", "world religions", "virology",
                 "formal logic", "marketing", "nutrition", "jurisprudence", "sociology"]
EVAL_STEMS = ["Which of the following best describes {x} in {s}?",
              "In {s}, what is the primary role of {x}?",
              "A researcher studying {s} observes {x}. Which conclusion follows?",
              "Which statement about {x} is true according to standard {s} texts?"]
EVAL_TERMS = ["the null hypothesis", "the control group", "a feedback loop", "the median case",
              "a boundary condition", "the first principle", "a confounding variable",
              "the standard model", "a reference class", "the second stage"]
EVAL_OPTIONS = ["It increases monotonically", "It has no measurable effect", "It depends on "
                "the initial conditions", "It is defined by convention", "It reverses the "
                "outcome", "It applies only at equilibrium", "It is always zero",
                "It cannot be observed directly"]

TRANSLATION_SENTENCES = [
    "Your order has shipped and should arrive within three business days.",
    "Please keep your receipt as proof of purchase.", "The meeting is moved to Thursday at 3 pm.",
    "Our store will be closed on public holidays.", "Click the link below to confirm your email "
    "address.", "The warranty covers manufacturing defects for two years.",
    "Thank you for staying with us; we hope to welcome you again soon.",
    "Batteries are not included.", "For your safety, do not leave luggage unattended.",
    "The password must contain at least eight characters.", "This product contains nuts.",
    "Returns are free within 30 days of delivery.", "Check-out time is 11 am.",
    "The invoice is attached to this message.", "Dinner is served from 7 pm in the main hall.",
]
TRANSLATION_LANGS = ["German", "French", "Spanish", "Japanese", "Portuguese"]

# -- the careful attacker's own material (simulate.careful): a task space written the way
# people ask, swept for coverage. Never drawn from the benign lists above nor from the
# harvester's pools, and free of chain-of-thought wording (features.COT).
CAREFUL_TOPICS = {
    "science": ["how tides are caused by the moon", "why some metals rust and others don't",
                "what dark matter is supposed to be", "how bats navigate in the dark",
                "why leaves change colour in autumn", "how lightning forms in a storm cloud"],
    "maths": ["what a logarithm actually does", "why you can't divide by zero",
              "how compound growth differs from linear growth", "what a standard deviation "
              "tells you", "how the Monty Hall problem works", "what makes a number irrational"],
    "coding": ["when to use a linked list instead of an array", "what a race condition is",
               "how garbage collection decides what to free", "what big-O notation measures",
               "how public key encryption lets strangers talk securely",
               "what a database index does under the hood"],
    "law": ["the difference between a misdemeanour and a felony", "what a non-compete clause "
            "can legally stop", "how small claims court works", "what fair use allows",
            "the difference between a will and a trust", "what tenant deposit rules usually say"],
    "medicine": ["how antibiotics differ from antivirals", "what blood pressure numbers mean",
                 "why fevers happen", "how anaesthesia puts you under", "what cholesterol "
                 "does in the body", "how allergies develop in adults"],
    "economics": ["why central banks raise interest rates", "what causes a recession",
                  "how tariffs affect prices at home", "what a bond yield is",
                  "why housing gets expensive in big cities", "how supply chains create "
                  "shortages"],
    "cooking": ["why bread dough needs to rest", "how to keep a steak juicy", "what emulsifying "
                "a sauce means", "why onions make you cry", "how fermentation makes kimchi "
                "sour", "the difference between baking soda and baking powder"],
    "philosophy": ["what the trolley problem is meant to show", "what Stoicism says about "
                   "anger", "the ship of Theseus puzzle", "what utilitarianism gets wrong",
                   "what free will debates are about", "what Plato's cave stands for"],
    "geography": ["why deserts form where they do", "how fjords were carved",
                  "why the Dead Sea is so salty", "what causes monsoons", "how river deltas "
                  "grow", "why Iceland has so many volcanoes"],
    "career": ["how to negotiate a first salary", "what to say in a resignation email",
               "how to explain a gap in a CV", "how to ask for a promotion", "what makes a "
               "good answer to 'tell me about yourself'", "how to give feedback to a peer"],
    "music": ["why a minor chord sounds sad", "what syncopation is", "how a guitar pickup "
              "works", "what makes a melody catchy", "how orchestras tune before a concert",
              "what a key change does in a pop song"],
    "sports": ["how the offside rule works in football", "why marathon runners hit the wall",
               "how tennis scoring got so strange", "what a good swimming stroke looks like",
               "how cycling teams use drafting", "what VO2 max measures"],
}
CAREFUL_FRAMES = ["I was wondering about {t}, could you explain?", "quick question: {t}?",
                  "my kid asked me about {t} and I had no idea what to say",
                  "Can you help me understand {t}?", "been reading about {t}. what's the gist?",
                  "Settle a debate for us: {t}", "what should I know about {t}",
                  "Could you give me a clear overview of {t}?",
                  "hi! I'm curious about {t}", "how would you describe {t} to a friend?"]
CAREFUL_FOLLOWUPS = ["interesting, could you go a bit deeper?", "can you give me a concrete "
                     "example of that?", "what do people usually get wrong about it?",
                     "and how would an expert look at it differently?", "nice. what's the "
                     "most surprising part?", "could you compare it with something similar?",
                     "what are the main exceptions to that?", "is there a simple rule of "
                     "thumb for it?"]
CAREFUL_SYSTEM = "You are a helpful, knowledgeable assistant."
