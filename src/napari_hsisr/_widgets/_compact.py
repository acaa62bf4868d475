"""Controls whose width never follows the layer names they show.

A QComboBox sizes itself to its longest item by default, so one real file name
(``NEON_D01_HARV_DP3_726000_4699000_reflectance_crop_blind``) widened the docks, and with them
the window, beyond a 1280 px screen. Here a combo asks for ``MIN_CHARS`` characters, draws its
current text elided in the middle (a result's method suffix stays readable) and names it in full in
its tooltip; its list elides too, each entry with its full name as tooltip. A word-wrapped label may
break long names at their underscores instead of asking for their width.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import (
    QComboBox,
    QLabel,
    QSizePolicy,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
    QWidget,
)

MIN_CHARS = 14  # what a layer combo asks for: a short name, or the start and end of a long one
FIXED_CHOICES_CHARS = 10  # a combo of fixed short choices (format, device, ...) needs less
ZERO_WIDTH_SPACE = "\u200b"


def elide_middle(text: str, n: int = 32) -> str:
    """``text`` cut to ``n`` characters with an ellipsis in the middle (its end kept)."""
    if len(text) <= n:
        return text
    head = (n - 1) // 2
    return f"{text[:head]}…{text[-(n - 1 - head):]}"


def breakable(text: str) -> str:
    """``text`` with a line-break opportunity after each underscore, for word-wrapped labels."""
    return text.replace("_", "_" + ZERO_WIDTH_SPACE)


class _ElidedComboPainter(QObject):
    """Paints a combo box as Qt does, but with its current text elided in the middle."""

    def eventFilter(self, combo, event):
        if event.type() != QEvent.Type.Paint or not isinstance(combo, QComboBox) or combo.isEditable():
            return False
        painter = QStylePainter(combo)
        option = QStyleOptionComboBox()
        combo.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        field = combo.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                             QStyle.SubControl.SC_ComboBoxEditField, combo)
        option.currentText = combo.fontMetrics().elidedText(option.currentText, Qt.TextElideMode.ElideMiddle,
                                                            max(field.width() - 4, 0))
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)
        painter.end()
        _name_in_tooltip(combo)  # also after changes made with the combo's signals blocked
        return True


_PAINTER = _ElidedComboPainter()


def compact_combo(combo: QComboBox, min_chars: int = MIN_CHARS) -> None:
    """Give ``combo`` a width independent of its items, elided text and full-name tooltips. A combo
    filled already holds fixed choices (layer lists are filled later): it asks for less."""
    if combo.count():
        min_chars = min(min_chars, FIXED_CHOICES_CHARS, max(len(combo.itemText(i)) for i in range(combo.count())))
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(min_chars)
    combo.view().setTextElideMode(Qt.TextElideMode.ElideMiddle)
    combo.installEventFilter(_PAINTER)
    combo.setProperty("description", combo.toolTip())
    combo.currentTextChanged.connect(lambda _text: _name_in_tooltip(combo))
    combo.model().rowsInserted.connect(lambda _parent, first, last: _item_tooltips(combo, first, last))
    _item_tooltips(combo, 0, combo.count() - 1)
    _name_in_tooltip(combo)


def _name_in_tooltip(combo) -> None:
    """The combo's description, then its current text in full when that is long."""
    description, text = combo.property("description") or "", combo.currentText()
    tooltip = f"{description}\n\n{text}" if len(text) > MIN_CHARS and description else (description or text)
    if combo.toolTip() != tooltip:
        combo.setToolTip(tooltip)


def _item_tooltips(combo, first: int, last: int) -> None:
    """Each entry without a tooltip of its own (a method's summary) gets its full text."""
    for i in range(first, last + 1):
        if combo.itemData(i, Qt.ItemDataRole.ToolTipRole) is None:
            combo.setItemData(i, combo.itemText(i), Qt.ItemDataRole.ToolTipRole)


def compact_controls(root: QWidget, min_chars: int = MIN_CHARS) -> None:
    """Every combo box of a dock compact, and its word-wrapped labels unable to widen it."""
    for combo in root.findChildren(QComboBox):
        compact_combo(combo, min_chars)
    for label in root.findChildren(QLabel):
        if label.wordWrap():
            label.setSizePolicy(QSizePolicy.Policy.Ignored, label.sizePolicy().verticalPolicy())
