"""kube-scheduler's in-tree plugins, one module each; ``registry`` maps names to factories."""
