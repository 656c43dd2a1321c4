"""Promotion and rollout: channel state, signed requests, exports, rollouts, windows and rollbacks."""
