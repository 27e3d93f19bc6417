"""The garbage collector over ownerReferences (upstream's pkg/controller/garbagecollector):
``graph`` is the dependency graph and its builder, ``garbagecollector`` the collector itself."""

from k8py.controllers.garbagecollector.garbagecollector import GarbageCollector

__all__ = ["GarbageCollector"]
