"""`distillery serve`"""

from __future__ import annotations

import click

from distillery.cli import UserError


@click.command()
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="TOML file of ServeConfig settings (flags override it)")
@click.option("--model", default=None, help="registered name, local HF directory, or 'fake' "
              "[default: smollm2-135m-instruct]")
@click.option("--engine", type=click.Choice(["auto", "torch", "llama"]), default=None,
              help="auto: llama.cpp when installed (pip install -e '.[llama]') and the model "
              "ships a GGUF, else torch [default: auto]")
@click.option("--watermark", type=click.Choice(["kgw", "gumbel", "none"]), default=None,
              help="mark every response with its account's key [default: kgw]")
@click.option("--watermark-key", default=None, help="key ring file [default: "
              "$DISTILLERY_WATERMARK_KEY or $DISTILLERY_HOME/watermark.key]")
@click.option("--database", default=None, help="SQLAlchemy URL [default: SQLite at "
              "$DISTILLERY_HOME/distillery.db]")
@click.option("--redis", "redis_url", default=None, help="Redis URL: rate limits shared "
              "across gateway processes")
@click.option("--host", default=None, help="[default: 127.0.0.1]")
@click.option("--port", default=None, type=int, help="[default: 8000]")
@click.option("--max-batch-size", default=None, type=int)
@click.option("--max-queue", default=None, type=int)
@click.option("--no-batching", is_flag=True, default=False, help="one request per engine call")
@click.option("--hashes-only", is_flag=True, default=False,
              help="usage rows keep sha256 of prompts and responses, not the text")
@click.option("--rpm", "rpm_limit", default=None, type=int, help="default requests/min per key")
@click.option("--tpm", "tpm_limit", default=None, type=int, help="default tokens/min per key")
@click.option("--simulated-clock", is_flag=True, default=None,
              help="record the x-distillery-sim-time header as created_at (replays only)")
@click.option("--audit-calibration", default=None, type=click.Path(exists=True, dir_okay=False),
              help="run the background extraction audit with this calibration")
@click.option("--audit-config", default=None, type=click.Path(exists=True, dir_okay=False),
              help="TOML of audit settings (thresholds, interval)")
def serve(config_file, model, engine, watermark, watermark_key, database, redis_url, host, port,
          max_batch_size, max_queue, no_batching, hashes_only, rpm_limit, tpm_limit,
          simulated_clock, audit_calibration, audit_config) -> None:
    """Serve the teacher through an OpenAI-compatible API (Ctrl-C or SIGTERM to stop;
    in-flight requests finish and every usage row is written)."""
    import tomllib

    from distillery.gateway import ServeConfig
    from distillery.gateway import serve as run

    try:
        config = ServeConfig.from_toml(
            config_file, model=model, engine=engine, watermark=watermark,
            watermark_key=watermark_key, database=database, redis_url=redis_url, host=host,
            port=port, max_batch_size=max_batch_size, max_queue=max_queue, rpm_limit=rpm_limit,
            tpm_limit=tpm_limit, dynamic_batching=False if no_batching else None,
            store_text=False if hashes_only else None, simulated_clock=simulated_clock,
            audit_calibration=audit_calibration, audit_config=audit_config)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{config_file}: {e}") from None
    preflight(config)
    run(config)


def preflight(config) -> None:
    """Check what the gateway needs before uvicorn starts: a failure inside its lifespan is a
    27-line trace, here it is one line. The database is opened (and migrated), the model name
    resolved (its package installed), the key ring loaded."""
    from distillery.cli.info import open_database
    from distillery.models.registry import ModelNotInstalledError, is_installed, resolve

    open_database(config.database).dispose()
    if config.model != "fake":
        from distillery.engine import pick_engine

        spec = resolve(config.model)
        if not is_installed(spec):
            raise ModelNotInstalledError(
                f"model {spec.name!r} is not installed: {spec.install_hint or 'see README'}")
        try:
            pick_engine(config.model, config.engine)
        except ValueError as e:
            raise UserError(str(e)) from None
    if config.watermark != "none":
        from distillery.watermark import KeyRing

        KeyRing.load(config.watermark_key)
    if config.audit_calibration:  # the auditor's thread would only log these
        from distillery.audit import AuditConfig, Calibration

        AuditConfig.from_toml(config.audit_config, calibration=config.audit_calibration)
        Calibration.load(config.audit_calibration)


COMMANDS = [serve]
