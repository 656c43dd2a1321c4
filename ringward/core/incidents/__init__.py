"""Security incidents (``ringward.incident.v1``): the record, its state machine and its response
clocks (first-action SLA by severity, reporter acknowledgement, 14-day response, disclosure
window). Pure: no I/O, no wall clock -- every function takes ``now``."""
