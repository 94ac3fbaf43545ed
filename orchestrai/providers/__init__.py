"""LLM providers behind one async interface. SDKs are imported only when a provider is used."""
