"""Migration operations: import another system's installation into a Ringward store."""
