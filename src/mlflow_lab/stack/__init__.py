"""Entrypoints of the stack's Python services, shared by the Compose images and the native runner."""
