"""Interoperability: parameter pytrees as safetensors files."""
