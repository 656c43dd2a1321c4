"""Incident operations: open / ack / update / close, listing, the breach report and its delivery."""
