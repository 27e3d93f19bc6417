"""ImageLocality: favour nodes that already have the pod's images.

A node's score is the sum, over the pod's containers and init containers whose image it has,
of the image size scaled by how widely the image has spread (nodes having it / all nodes, so
an image on every node is no reason to pick one of them), clamped to [23 MB, 1000 MB per
container] and mapped linearly onto [0, 100]. Image sizes and spread come from the cache
(``NodeInfo.image_states``, filled from ``status.images``).

The pod's normalized image names and the node count are computed on the first Score call of a
cycle and kept in the CycleState; a node without images scores 0 at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from k8py.scheduler.framework.interface import MAX_NODE_SCORE, SKIP, CycleState, Handle, Status
from k8py.scheduler.framework.types import ImageStateSummary, NodeInfo, Obj, PodInfo

NAME = "ImageLocality"

MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB

_ZERO = (0, None)


def normalized_image_name(name: str) -> str:
    """normalizedImageName: add the ":latest" tag to an image named without tag or digest."""
    if name.rfind(":") <= name.rfind("/"):
        return name + ":latest"
    return name


def scaled_image_score(state: ImageStateSummary, total_num_nodes: int) -> int:
    spread = state.num_nodes / total_num_nodes
    return int(state.size * spread)


def calculate_priority(sum_scores: int, num_containers: int) -> int:
    max_threshold = MAX_CONTAINER_THRESHOLD * num_containers
    if sum_scores < MIN_THRESHOLD:
        sum_scores = MIN_THRESHOLD
    elif sum_scores > max_threshold:
        sum_scores = max_threshold
    return MAX_NODE_SCORE * (sum_scores - MIN_THRESHOLD) // (max_threshold - MIN_THRESHOLD)


def _pod_images(pod: Obj) -> tuple[tuple[str, ...], int]:
    """The normalized images of the init containers and containers, and how many containers."""
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]
    return tuple(normalized_image_name(c.get("image") or "") for c in containers), len(containers)


class ImageLocality:
    name = NAME

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        self.handle = handle

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        """Skip when no node lists any image: every score would be 0 (upstream has no PreScore)."""
        if not any(ni.image_states for ni in nodes):
            return SKIP
        return None

    def score(self, state: CycleState, pod: PodInfo, node_info: NodeInfo) -> tuple[int, Status | None]:
        image_states = node_info.image_states
        if not image_states:
            return _ZERO
        cached = state.get(NAME)
        if cached is None:
            images, n = _pod_images(pod.pod)
            cached = state[NAME] = (images, n, self.handle.snapshot().num_nodes())
        images, num_containers, total = cached
        total_sum = 0
        for image in images:
            st = image_states.get(image)
            if st is not None:
                total_sum += int(st.size * (st.num_nodes / total))
        if total_sum < MIN_THRESHOLD:
            return _ZERO
        return calculate_priority(total_sum, num_containers), None

    def score_extensions(self) -> None:
        return None
