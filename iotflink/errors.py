"""The project's single exception hierarchy.

Every error the project raises on purpose derives from :class:`IotFlinkError`, so a caller
can catch the whole family with one ``except``. Wrap lower-level errors with
``raise SomeError(...) from exc`` so the original cause stays in the traceback.
"""


class IotFlinkError(Exception):
    """Base class of every error raised by iot-flink code."""


class ConfigError(IotFlinkError):
    """A setting (environment variable or file) is missing or invalid."""


class ValidationError(IotFlinkError):
    """A sensor payload breaks the payload contract.

    Attributes:
        reason: a short machine-readable reason code, e.g. ``"malformed_json"``,
            ``"missing_field"``, ``"bad_type"``, ``"non_finite"``, ``"too_large"``,
            ``"ts_too_old"``, ``"ts_in_future"``. It is written into the dead-letter
            record's ``reason`` field.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class StackError(IotFlinkError):
    """A local service (Kafka, Mosquitto, Flink) failed to start, stop or answer.

    The message names the service and its log file.
    """


class JobError(IotFlinkError):
    """A Flink job could not be built, submitted or controlled."""
