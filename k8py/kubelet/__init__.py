"""The kubelet: node agent turning bound pods into containers (upstream pkg/kubelet)."""
