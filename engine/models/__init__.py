"""HSI classifiers and the registry that maps a model name to its class and default configuration."""
