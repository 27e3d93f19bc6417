"""The in-tree plugin registry: plugin name -> factory(args, handle)."""

from __future__ import annotations

from k8py.scheduler.framework.runtime import PluginFactory
from k8py.scheduler.plugins.defaultbinder import DefaultBinder
from k8py.scheduler.plugins.defaultpreemption import DefaultPreemption
from k8py.scheduler.plugins.imagelocality import ImageLocality
from k8py.scheduler.plugins.interpodaffinity import InterPodAffinity
from k8py.scheduler.plugins.nodeaffinity import NodeAffinity
from k8py.scheduler.plugins.nodename import NodeName
from k8py.scheduler.plugins.nodeports import NodePorts
from k8py.scheduler.plugins.noderesources import BalancedAllocation, Fit
from k8py.scheduler.plugins.nodeunschedulable import NodeUnschedulable
from k8py.scheduler.plugins.podtopologyspread import PodTopologySpread
from k8py.scheduler.plugins.queuesort import PrioritySort
from k8py.scheduler.plugins.schedulinggates import SchedulingGates
from k8py.scheduler.plugins.tainttoleration import TaintToleration
from k8py.scheduler.plugins.volumebinding import VolumeBinding
from k8py.scheduler.plugins.volumelimits import NodeVolumeLimits
from k8py.scheduler.plugins.volumerestrictions import VolumeRestrictions
from k8py.scheduler.plugins.volumezone import VolumeZone

IN_TREE: dict[str, PluginFactory] = {
    cls.name: cls
    for cls in (
        SchedulingGates,
        PrioritySort,
        NodeUnschedulable,
        NodeName,
        TaintToleration,
        NodeAffinity,
        NodePorts,
        Fit,
        VolumeRestrictions,
        NodeVolumeLimits,
        VolumeBinding,
        VolumeZone,
        PodTopologySpread,
        InterPodAffinity,
        DefaultPreemption,
        BalancedAllocation,
        ImageLocality,
        DefaultBinder,
    )
}
