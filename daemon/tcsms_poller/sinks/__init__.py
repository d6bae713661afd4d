"""Where records go: the ``Sink`` contract, the plugin registry and the built-in sinks."""
