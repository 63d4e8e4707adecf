"""The intended ParaView view of a results folder (runs inside ParaView's own Python).

Every demo and every writer of :mod:`hmm_fem.io` puts VTX folders (``*.bp``) into a results
folder. This script opens all of them with ParaView's ``ADIOS2VTXReader``, colours each by
its first array with the colour bar shown, and either leaves them in the ParaView window or
renders one PNG per file. It imports nothing from hmm-fem, so that ParaView's Python can run
it wherever ParaView is installed. The easy way in is the command line::

    hmm-fem paraview results/cell_conductivity               # the ParaView window
    hmm-fem paraview results/cell_conductivity --png views   # one PNG per file, no window

which runs, respectively, ``paraview --script=<this file>`` (the folder in the environment
variable ``HMM_FEM_VIEW``) and ``pvpython <this file> FOLDER --png DIR``.
"""

import os
import sys
from pathlib import Path

VIEW_SIZE = (640, 480)


def vtx_files(folder):
    """The VTX folders (``*.bp``) under ``folder``, sorted."""
    return sorted(p for p in Path(folder).rglob("*.bp") if p.is_dir())


def arrays_of(reader):
    """``[(association, name)]`` of the arrays a reader shows, ParaView's bookkeeping left out."""
    shown = []
    for association, arrays in (("POINTS", reader.PointData), ("CELLS", reader.CellData)):
        shown += [(association, name) for name in arrays.keys() if not name.startswith("vtk")]
    return shown


def show(reader, view):
    """Show ``reader`` in ``view``, coloured by its first array, with the colour bar."""
    from paraview import simple

    display = simple.Show(reader, view)
    arrays = arrays_of(reader)
    if arrays:
        simple.ColorBy(display, arrays[0])
        display.RescaleTransferFunctionToDataRange(True, False)
        display.SetScalarBarVisibility(view, True)
    return display


def render_png(path, picture, time=None):
    """Render the VTX folder ``path`` (at its last step, or ``time``) to the PNG ``picture``."""
    from paraview import simple

    reader = simple.ADIOS2VTXReader(FileName=str(path))
    view = simple.CreateView("RenderView")
    view.ViewSize = list(VIEW_SIZE)
    view.OrientationAxesVisibility = 0
    times = reader.TimestepValues
    if time is None and not isinstance(times, (int, float)) and len(times):
        time = times[-1]
    if time is not None:
        view.ViewTime = time
    show(reader, view)
    view.ResetCamera()
    Path(picture).parent.mkdir(parents=True, exist_ok=True)
    simple.SaveScreenshot(str(picture), view, ImageResolution=list(VIEW_SIZE))
    simple.Delete(view)
    simple.Delete(reader)


def open_in_window(folder):
    """Open every VTX folder under ``folder`` in the ParaView window; the first is visible."""
    from paraview import simple

    view = simple.GetActiveViewOrCreate("RenderView")
    for index, path in enumerate(vtx_files(folder)):
        reader = simple.ADIOS2VTXReader(FileName=str(path), registrationName=path.name)
        display = show(reader, view)
        if index > 0:
            simple.Hide(reader, view)
        del display
    simple.GetAnimationScene().UpdateAnimationUsingDataTimeSteps()
    view.ResetCamera()
    simple.Render(view)


def main(argv):
    """``pvpython paraview_view.py FOLDER --png DIR``, or the window with ``HMM_FEM_VIEW``."""
    if len(argv) >= 4 and argv[2] == "--png":
        folder, out = Path(argv[1]), Path(argv[3])
        files = vtx_files(folder)
        if not files:
            print(f"no VTX folders (*.bp) under {folder}")
            return 1
        for path in files:
            picture = out / path.relative_to(folder).with_suffix(".png")
            render_png(path, picture)
            print(f"wrote {picture}")
        return 0
    folder = os.environ.get("HMM_FEM_VIEW")
    if folder is None:
        print(__doc__)
        return 2
    open_in_window(folder)
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    if code and not os.environ.get("HMM_FEM_VIEW"):
        sys.exit(code)
