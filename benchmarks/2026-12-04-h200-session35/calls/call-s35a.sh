#!/usr/bin/env bash
# Session 35, call A: call-s35c.sh at T = 1, 2, 4, 8 on an earlier version of the direct
# routing (benchmarks/README.md, session 35; that version is not kept, so on the final tree
# this runs the final one).
TS="1 2 4 8" OUT=${OUT:-build/s35a} exec bash "$(dirname "$0")/call-s35c.sh"
