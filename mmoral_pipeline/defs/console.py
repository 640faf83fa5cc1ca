"""The console logger of `mmoral materialize`: warnings and errors, plus progress lines.

Dagster's default console logger shows everything from a level up; at INFO a terminal drowns in
step events, at WARNING it shows nothing for minutes. This one keeps its level (default WARNING)
and lets through, below it, the lines that start with `progress.PROGRESS_MARK` (from the assets,
and from the SFT trainer through Pipes), in a short form: time, step, message.
"""

import logging

import dagster as dg

from mmoral_pipeline.progress import PROGRESS_MARK


class _ShortFormatter(logging.Formatter):
    """`HH:MM:SS step: message` for Dagster records (the run id and job name are noise on a terminal)."""

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        full = record.getMessage()
        message = meta.get("orig_message") or full
        error = full.partition(message)[2] if message in full else ""  # a failed step's error and stack trace
        step = meta.get("step_key")
        level = "" if record.levelno < logging.WARNING else f"{record.levelname} "
        return f"{self.formatTime(record, '%H:%M:%S')} {level}{f'{step}: ' if step else ''}{message}{error}"


def _progress_or_level(level: int):
    def keep(record: logging.LogRecord) -> bool:
        if record.levelno >= level:
            return True
        meta = getattr(record, "dagster_meta", None) or {}
        return str(meta.get("orig_message") or record.getMessage()).startswith(PROGRESS_MARK)

    return keep


@dg.logger(
    {
        "log_level": dg.Field(
            str, is_required=False, default_value="WARNING", description="records from this level up"
        ),
        "progress": dg.Field(
            bool, is_required=False, default_value=True, description="also show progress lines below it"
        ),
    },
    description="Terminal logger of `mmoral materialize`: warnings and errors, plus progress lines.",
)
def progress_console_logger(init_context) -> logging.Logger:
    level = logging.getLevelName(init_context.logger_config["log_level"].upper())
    level = level if isinstance(level, int) else logging.WARNING
    show_progress = init_context.logger_config["progress"]
    # a private logger per run, as Dagster's own console logger (not one shared through logging.getLogger)
    logger = logging.Logger("mmoral", level=logging.DEBUG if show_progress else level)
    handler = logging.StreamHandler()
    handler.setFormatter(_ShortFormatter())
    handler.addFilter(_progress_or_level(level) if show_progress else (lambda r: r.levelno >= level))
    logger.addHandler(handler)
    return logger
