"""onnxruntime's telemetry switches.  ortgpu collects and sends nothing, so both are no-ops
(onnxruntime's are no-ops too outside Windows builds with telemetry)."""


def disable_telemetry_events() -> None:
    """Nothing to disable: ortgpu sends no telemetry."""


def enable_telemetry_events() -> None:
    """Nothing to enable: ortgpu has no telemetry to send."""
