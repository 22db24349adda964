"""The base of every pydantic model of the product."""

from pydantic import BaseModel, ConfigDict


class Schema(BaseModel):
    """A pydantic model whose validators are built when first used, not when its module is imported.

    Building them for every model at import took about a fifth of the API
    function's cold start; a request uses a handful of them.
    """

    model_config = ConfigDict(defer_build=True)
