"""glmv: self-hosted GLM-V (GLM-4.5V, GLM-4.1V) inference."""
from .llm import LLM, RequestOutput
from .sampling_params import SamplingParams

__all__ = ["LLM", "RequestOutput", "SamplingParams"]
__version__ = "0.1.0"
