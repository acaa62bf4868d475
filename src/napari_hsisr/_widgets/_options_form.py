"""A method's options as a form built with magicgui from its declared ``Option`` tuple.

The widget type follows the option: a choice list is a combo box, a flag a check box, a whole
number a spin box within its bounds, anything else (decimals such as ``1e-3``, text) a line edit
that :meth:`~napari_hsisr.core.methods.base.Option.parse` reads and checks, as the API and the CLI do.
"""

from __future__ import annotations

from qtpy.QtWidgets import QVBoxLayout, QWidget


def _widget_for(opt):
    from magicgui.widgets import CheckBox, ComboBox, LineEdit, SpinBox

    d = opt.default
    kw = {"name": opt.name, "label": opt.name, "tooltip": opt.help}
    if opt.choices:
        return ComboBox(choices=list(opt.choices), value=d if d in opt.choices else opt.choices[0], **kw)
    if isinstance(d, bool):
        return CheckBox(value=d, **kw)
    if isinstance(d, int):
        lo = int(opt.minimum) if opt.minimum is not None else -(10**9)
        hi = int(opt.maximum) if opt.maximum is not None else 10**9
        return SpinBox(value=d, min=lo, max=hi, **kw)
    return LineEdit(value=f"{d:g}" if isinstance(d, float) else str(d), **kw)


class OptionsForm(QWidget):
    """Form generated from a method's ``Option`` tuple (magicgui ``Container``)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._container = None
        self._options: dict = {}

    def set_options(self, options) -> None:
        from magicgui.widgets import Container

        if self._container is not None:
            self._layout.removeWidget(self._container.native)
            self._container.native.deleteLater()
        self._options = {o.name: o for o in options}
        self._container = Container(widgets=[_widget_for(o) for o in options], labels=True)
        self._container.margins = (0, 0, 0, 0)
        self._layout.addWidget(self._container.native)

    def values(self) -> dict:
        """The options, parsed and checked (raises ``InputError`` naming the option)."""
        return {name: opt.parse(self._container[name].value) for name, opt in self._options.items()}

    def set_values(self, values: dict) -> None:
        """Fill the form from recorded options (unknown names ignored)."""
        for name, value in values.items():
            if name in self._options:
                w = self._container[name]
                opt = self._options[name]
                w.value = value if not isinstance(opt.default, float) or isinstance(value, str) else f"{value:g}"

    def widget(self, name):
        """The Qt widget of option ``name``."""
        return self._container[name].native

    def __len__(self) -> int:
        return len(self._options)
