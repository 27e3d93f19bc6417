"""The pod network: node routes (network agent) and NetworkPolicy enforcement."""
