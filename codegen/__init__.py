"""codegen: print and compile straight-line batch kernels.

Knows nothing of tracing or of symjac: its input is a `codegen.Program`,
plain data that a test can build by hand.
"""

from codegen.backends import BACKENDS, CompiledKernel, compile_program, numba_available, print_program
from codegen.printers import NumbaPrinter, NumPyPrinter, Printer, PrinterError
from codegen.program import Param, Program, Stmt
from codegen.structural import STRUCTURAL
from codegen import linalg  # noqa: F401,E402  (the linear-algebra ops' printing, into STRUCTURAL)

__all__ = ["BACKENDS", "CompiledKernel", "compile_program", "numba_available", "print_program",
           "Printer", "NumPyPrinter", "NumbaPrinter", "PrinterError",
           "Param", "Program", "Stmt", "STRUCTURAL"]
