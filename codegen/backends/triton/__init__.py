"""The ``triton`` backend: GPU kernels for any cell (haste's structure), over torch tensors.

A backend folder holds its printer, its template and its layout, and registers the layout here;
``cellgrad generate --backend triton`` and ``cellgrad regenerate`` then write
``generated/<cell>_triton.py``. The modules run on CUDA tensors, and on CPU tensors under
``TRITON_INTERPRET=1`` (how the tests check them without a GPU).
"""

from codegen.kernels import register

from .layout import TritonLayout

register("triton", TritonLayout)
