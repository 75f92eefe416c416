"""Composable transformer blocks: one concept per file, each built from explicit arguments."""
