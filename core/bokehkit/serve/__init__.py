"""`bokehkit serve`: the engine side of the plug-in protocol (docs/protocol.md): requests,
sessions over stdio or TCP, job folders and the engine's lifetime."""
