#!/bin/bash
# Every standard-preset run of issues 17 and 18, in an order that pairs results early; resumable: run it again and
# each step skips what has finished (a killed run continues from its last finished epoch).
#
#   bash bench/ab_queue.sh CACHE
#
# CACHE must hold FER2013 imported and scanned with its label signals (`labels fer2013`), FER+ imported and linked
# (`link fer2013 ferplus`); the first steps add CK+, ExpW, their splits and the collection when missing.
set -e
C=${1:?usage: bash bench/ab_queue.sh CACHE}
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
P="$PY -m fer_core --cache $C --quiet"
SH=../shared/datasets
[ -d "$C/datasets/ckplus" ] || $P import $SH/ckplus/archive.zip --name ckplus
[ -d "$C/datasets/expw" ] || $P import $SH/expw/archive.zip --name expw
$P scan ckplus
$P scan expw --signals quality,duplicates,faces,embeddings
$P split ckplus --show | grep -q "split by" || $P split ckplus --by subject --seed 0
$P split expw --show | grep -q "split by" || $P split expw --by identity --seed 0
$P collection show fer-ck-expw >/dev/null 2>&1 || $P collection create fer-ck-expw --members fer2013,ckplus,expw --contempt drop
$P scan fer-ck-expw
$PY -c "import sys; from fer_core import links; sys.exit(links.status('ferplus', 'fer-ck-expw', '$C')['state'] != 'ok')" \
  || $P link ferplus fer-ck-expw
AB="$PY bench/bench_ab.py --cache $C --ab-id crowd-ab --arms raw,curated,control,relabel,crowd --eval-on ferplus:test --seeds 3"
ADD="$PY bench/bench_adding_data.py --cache $C --collection fer-ck-expw --ab-id crowd-ab"
$AB --train-seeds 0 --train-arms raw,curated
$ADD --seeds 0
# issue 18's A/B of adding data first (it needs only the curated arm's seeds 1 and 2 beside the collection's)
$AB --train-seeds 1 --train-arms curated
$ADD --seeds 0,1
$AB --train-seeds 2 --train-arms curated
$ADD --seeds 0,1,2
# issue 17 in the order that gives verdicts soonest: raw's seeds 1-2 (curated − raw over 3 seeds), the control's
# (curated − control), then crowd and relabel; one seed of a standard run moves FER+ Test by ~2 points (curated:
# 66.2% seed 0, 68.1% seed 1), so nothing is judged on one seed
for s in 1 2; do $AB --train-seeds $s --train-arms raw; done
# the same recipe at equal compute (budget "steps": curated and control draw raw's 28,709 images per epoch, so the
# 16% the recipe removes does not also cost 16% of the gradient steps), against the same raw runs
$PY bench/bench_recipe_cuts.py --cache $C --write-ablations $C/ablations >/dev/null
STEPS="$PY bench/bench_ab.py --cache $C --ab-id crowd-steps --recipe $C/ablations/fer2013-default.yaml --baseline crowd-ab \
  --arms raw,curated,control,crowd,relabel --budget steps --eval-on ferplus:test --seeds 3"
for s in 0 1 2; do $STEPS --train-seeds $s --train-arms curated; done
for s in 0 1 2; do $STEPS --train-seeds $s --train-arms control; done
for s in 0 1 2; do $STEPS --train-seeds $s --train-arms crowd; done
for s in 0 1 2; do $STEPS --train-seeds $s --train-arms relabel; done
# the default recipe minus one cut at a time, 3 seeds each, at the same steps, against the same raw runs
for k in keepdups nolabel noquality; do
  $PY bench/bench_ab.py --cache $C --ab-id ablate-$k --recipe $C/ablations/fer2013-default-$k.yaml \
    --baseline crowd-ab --arms raw,curated --budget steps --eval-on ferplus:test --seeds 3
done
# FER+'s own reference on FER+ Test (majority and soft labels), each also judged on FER2013's test
$P scan ferplus
[ -f "$C/ferplus-default.yaml" ] || $P recipe ferplus --out "$C/ferplus-default.yaml"
for s in 0 1 2; do
  for soft in "" "--soft"; do
    id="ref-s$s${soft:+-soft}"
    [ -f "$C/datasets/ferplus/runs/$id/metrics.json" ] && continue
    $P train ferplus --recipe "$C/ferplus-default.yaml" --preset standard --seed $s $soft --run-id "$id" --resume \
      --eval-on fer2013:test
  done
done
# last: crowd-ab at the same passes (control seed 2, relabel, crowd) — the budget the first verdict was given at
for s in 0 1 2; do $AB --train-seeds $s; done
