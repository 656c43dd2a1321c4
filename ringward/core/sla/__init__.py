"""SLA domain core: the remediation SLA report, notification routing with Alertmanager grouping and
suppression, silences and maintenance windows, acknowledgements, PagerDuty-style escalation with
owner calendars and SLOs. Pure: every rule is a function of (history, policy, report, now)."""
