"""Code shared by the API and the worker: config, data, storage, cache, memory, model."""
