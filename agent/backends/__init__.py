"""Model backends: chat messages and images in, a ``Completion`` out.

``local`` runs our Qwen2-VL in this process; ``openai`` calls any OpenAI-compatible
chat-completions endpoint (vLLM, our own ``serve``). Policies and the server use them alike.
"""

from agent.backends.base import Backend, Completion, Params

__all__ = ["Backend", "Completion", "Params"]
