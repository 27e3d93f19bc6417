"""The kubelet's volume manager and volume plugins (upstream pkg/kubelet/volumemanager, pkg/volume).

``manager.VolumeManager`` sets up a pod's volumes under ``<pods-dir>/<pod-uid>/volumes/
kubernetes.io~<plugin>/<volume>``, keeps the file-projecting ones (configMap, secret, downwardAPI,
projected) current, tears everything down (mounts included) and turns a container's volumeMounts
into runtime mounts (subPath, subPathExpr, readOnly).  One module per plugin, as upstream.
"""
