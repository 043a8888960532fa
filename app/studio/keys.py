"""Every ``st.session_state`` key of the app, in one place.

Widget keys double as the names tests drive (``at.slider(key=...)``). Column widgets are
keyed per column id (``c{id}.{field}``), the quality per codec (``c{id}.q.{codec}``) since
every codec has its own scale. Keys starting with ``_`` are internal (no widget).
"""

from __future__ import annotations

# -- sidebar -----------------------------------------------------------------------------
SAMPLES = "samples"  # multiselect: bundled sample names
UPLOADS = "uploads"  # file_uploader
SHOWN = "shown"  # selectbox: ImageEntry.key of the image shown in the columns
THRESHOLD = "threshold"  # slider: display score threshold
TASKS = "tasks"  # multiselect: secondary tasks served from every column's bitstream (pose, classification)
SEEN_IMAGES = "_seen_images"  # image keys already listed (a new upload becomes the shown image)
REFUSED_SEEN = "_refused_seen"  # upload keys already reported as refused in the main area

# -- columns -------------------------------------------------------------------------------
COLUMN_IDS = "col_ids"  # list[int]; id i is column letter "ABCD"[i], for its whole life
ADD_COLUMN = "add_column"  # button
PICK = "_rd_pick"  # a pending {"column": id, "quality": q} from the RD chart
DRAWN = "_drawn"  # column id -> config key its last result was drawn with
FIELDS = ("paradigm", "model", "split", "codec", "wrapper", "rdo")


def column(cid: int, field: str) -> str:
    return f"c{cid}.{field}"


def quality(cid: int, codec: str) -> str:
    return f"c{cid}.q.{codec}"


def remove(cid: int) -> str:
    return f"remove.{cid}"


def column_prefix(cid: int) -> str:
    return f"c{cid}."


def column_fragment(cid: int) -> str:
    """The ``st.fragment`` key of column ``cid``'s body (``st.rerun(key)`` reruns just it)."""
    return f"column-{cid}"


def outcome(cid: int) -> str:
    """Column ``cid``'s last outcome, for the tabs that rerun on their own (fragments)."""
    return f"_outcome.{cid}"


def tab_scheduled(cid: int) -> str:
    """Set by column ``cid``'s widget callback when it has already scheduled the tab showing that column."""
    return f"_tab_scheduled.{cid}"


# -- tabs ----------------------------------------------------------------------------------
TAB = "tab"  # st.tabs with state: the open tab's label
FM_COLUMN, FM_TENSOR, FM_CHANNEL, FM_CHART = "fm.column", "fm.tensor", "fm.channel", "fm.chart"
MAPS_FRAGMENT, BITS_FRAGMENT = "tab-maps", "tab-bits"  # fragment keys of the two one-column tabs
BA_COLUMN, BA_CHART, BA_ERROR = "ba.column", "ba.chart", "ba.error"
BA_KIND, BA_SOURCE, BA_PAD, BA_BLOCKS, BA_HEAT = "ba.kind", "ba.source", "ba.pad", "ba.blocks", "ba.heat"
BA_STRENGTH = "ba.strength"
RD_SOURCE, RD_LIMIT, RD_METRIC, RD_TARGET, RD_ANCHOR = "rd.source", "rd.limit", "rd.metric", "rd.target", "rd.anchor"
RD_CHART = "rd.chart"
RD_CURVE_COLUMNS = "rd.curve_columns"  # curve name -> column ids using it (for chart clicks)
RD_DOC = "_rd_doc"  # the last RD results shown (offered in the export tab)
SHOWN_SAMPLE = "_shown_sample"  # a link's shown sample, applied once the images are listed

# -- URL -----------------------------------------------------------------------------------
URL_LOADED = "_url_loaded"  # the query string was read into the session once
URL_NOTES = "_url_notes"  # what of the link could not be applied
