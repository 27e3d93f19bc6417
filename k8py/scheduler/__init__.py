"""kube-scheduler: the scheduling framework, its default plugins, queue, cache and loop."""
