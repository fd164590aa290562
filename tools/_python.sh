# Sourced by the shell scripts under tools/: sets PYTHON to the interpreter
# tools/setup_env.sh installed into (recorded in .mmadapter-python at the
# repository root), unless PYTHON is set already; without a record, the
# python3 on PATH (then python), so the scripts run where only python3 exists.
_mmadapter_record="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.mmadapter-python"
if [ -z "${PYTHON:-}" ] && [ -s "$_mmadapter_record" ] && [ -x "$(cat "$_mmadapter_record")" ]; then
  PYTHON=$(cat "$_mmadapter_record")
fi
PYTHON=${PYTHON:-$(command -v python3 || command -v python || true)}
if [ -z "$PYTHON" ]; then
  echo "No Python interpreter found: run 'bash tools/setup_env.sh' first, or set PYTHON." >&2
  exit 1
fi
unset _mmadapter_record
