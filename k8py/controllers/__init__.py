"""kube-controller-manager: one module per controller, and the manager that runs a chosen set."""
