"""The streaming protocols of exec, attach, port-forward: WebSocket channels and SPDY/3.1."""
