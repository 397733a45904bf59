"""The service's interfaces to other programs: the HTTP API (FastAPI: cited answers, search, passages,
documents, health, metrics, the OpenAI-compatible chat and the chat widget), the MCP server, and the
``rag serve`` / ``rag mcp`` commands (``api.cli``) that start them.

May import ``core``, ``corpus``, ``embeddings`` and ``rag``; never ``eval`` (the harness measures this
package from outside, through a ``rag serve`` process). Inside, the app (``api.app``) builds on the shared
state (``api.state``) and the routes (``api.routes``), which read that state through ``api.deps``.
"""
