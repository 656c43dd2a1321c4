"""Migration from the reference system (CAVRA): its stores and connector file, read strictly."""
