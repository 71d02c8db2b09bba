"""Component ids, one place: pages build components with them, callbacks wire them."""

URL = "url"
CONTENT = "page-content"
NAV = "nav"

# overview
OV_WORKER = "ov-worker-status"
OV_POLL = "ov-poll"
OV_ANALYSIS = "ov-analysis"
OV_PARAMS = "ov-params"
OV_RUN = "ov-run-button"
OV_JOB = "ov-job"
OV_JOB_POLL = "ov-job-poll"
OV_PROGRESS = "ov-progress"
OV_RUNS = "ov-runs-table"
OV_MESSAGE = "ov-message"

# head map
HM_RUN = "hm-run"
HM_COLUMN = "hm-column"
HM_MAP = "hm-map"
HM_TOP = "hm-top-table"
HM_HEAD = "hm-head"  # Store: the selected head label
HM_HEAD_INPUT = "hm-head-input"
HM_HEAD_GO = "hm-head-go"
HM_PROMPT = "hm-prompt"
HM_TEXT = "hm-text"
HM_MAX = "hm-max-tokens"
HM_PATTERN = "hm-pattern"
HM_JOB = "hm-job"
HM_JOB_POLL = "hm-job-poll"
HM_PROGRESS = "hm-progress"
HM_ACROSS = "hm-across"
HM_TITLE = "hm-head-title"
HM_MESSAGE = "hm-message"
TOP_HEAD_BUTTON = "top-head"  # pattern-matching type

# compare
CM_A = "cm-a"
CM_B = "cm-b"
CM_K = "cm-k"
CM_STATS = "cm-stats"
CM_MAP_A = "cm-map-a"
CM_MAP_B = "cm-map-b"
CM_DIFF = "cm-diff"
CM_MESSAGE = "cm-message"

# circuits
CC_A = "cc-a"
CC_B = "cc-b"
CC_STATS = "cc-stats"
CC_OVERLAP = "cc-overlap"
CC_MAP_A = "cc-map-a"
CC_MAP_B = "cc-map-b"
CC_META = "cc-meta"
CC_MESSAGE = "cc-message"

# interventions
IV_RUN_MAP = "iv-run"
IV_MAP = "iv-map"
IV_HEADS = "iv-heads"
IV_EDIT = "iv-edit"
IV_ALPHA = "iv-alpha"
IV_KEYS = "iv-keys"
IV_METRIC = "iv-metric"
IV_SOURCE = "iv-source"
IV_N = "iv-n-prompts"
IV_TOKENS = "iv-n-tokens"
IV_TYPED = "iv-typed"
IV_PATCH = "iv-patch"
IV_GO = "iv-go"
IV_JOB = "iv-job"
IV_JOB_POLL = "iv-job-poll"
IV_PROGRESS = "iv-progress"
IV_SUMMARY = "iv-summary"
IV_TABLE = "iv-table"
IV_FIGURE = "iv-figure"
IV_MESSAGE = "iv-message"

# tokens
TK_PROMPT = "tk-prompt"
TK_TEXT = "tk-text"
TK_HEAD = "tk-head"
TK_WINDOW = "tk-window"
TK_GO = "tk-go"
TK_JOB = "tk-job"
TK_JOB_POLL = "tk-job-poll"
TK_PROGRESS = "tk-progress"
TK_FIGURE = "tk-figure"
TK_MESSAGE = "tk-message"

# atlas
AT_MODEL = "at-model"
AT_ROLE = "at-role"
AT_METRICS = "at-metrics-table"
AT_MATRIX = "at-matrix"
AT_HEATMAP = "at-heatmap"
AT_LINK = "at-profile-link"
AT_DOWNLOAD = "at-download"
AT_DOWNLOAD_GO = "at-download-button"
AT_MESSAGE = "at-message"

# head profile
HP_HEAD_INPUT = "hp-head-input"
HP_GO = "hp-go"
HP_METRICS = "hp-metrics-table"
HP_PROBE_JOB = "hp-probe-job"
HP_PROBE_POLL = "hp-probe-poll"
HP_PROBE_PROGRESS = "hp-probe-progress"
HP_ATTENTION = "hp-attention"
HP_TOKEN = "hp-token"  # pattern-matching type: {type, task, index}
HP_TEXT = "hp-text"  # pattern-matching type: {type, task}
HP_MODE = "hp-mode"
HP_ABLATE = "hp-ablate-button"
HP_ABLATE_JOB = "hp-ablate-job"
HP_ABLATE_POLL = "hp-ablate-poll"
HP_ABLATE_PROGRESS = "hp-ablate-progress"
HP_ABLATION = "hp-ablation"
HP_MESSAGE = "hp-message"

# head-map links to profiles
CM_PROFILE = "cm-profile-link"
CC_PROFILE = "cc-profile-link"

# catalog (overview): label and delete runs
OV_MANAGE_RUN = "ov-manage-run"
OV_LABEL = "ov-label"
OV_LABEL_SAVE = "ov-label-save"
OV_DELETE = "ov-delete"
OV_CONFIRM = "ov-delete-confirm"
OV_MANAGE_MESSAGE = "ov-manage-message"
HM_DEFINITION = "hm-definition"
CM_DEFINITION = "cm-definition"
# ---- interventions (task prompt sets, saved runs) ----
IV_HISTORY = "iv-history"
# jobs: the worker's queue (a page, and a Cancel button in every job's progress line)
JOB_CANCEL = "job-cancel"  # pattern-matching type; key "job" = the worker job id
JOBS_POLL = "jobs-poll"
JOBS_TABLE = "jobs-table"
# attention text view
AX_PROMPT = "ax-prompt"
AX_TEXT = "ax-text"
AX_LAYER = "ax-layer"
AX_SIZE = "ax-size"
AX_PAGE = "ax-page"
AX_GO = "ax-go"
AX_PREV = "ax-prev"
AX_NEXT = "ax-next"
AX_JOB = "ax-job"
AX_JOB_POLL = "ax-job-poll"
AX_PROGRESS = "ax-progress"
AX_MESSAGE = "ax-message"
AX_DATA = "ax-data"  # Store: the page the worker computed
AX_RENDERED = "ax-rendered"  # what the browser drew (set by the clientside callback)
AX_VIEW = "ax-view"  # drawn by assets/attention_text.js
AX_SHOWN = "ax-shown"  # Store: layer, page, n_pages of the page shown (small: sent back with requests)
