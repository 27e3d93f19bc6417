"""The scheduling framework: the plugin contract (interface), pods and nodes as the plugins
see them (types), and one profile's plugins run at each extension point (runtime)."""
