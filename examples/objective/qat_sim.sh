#!/bin/sh
# A stand-in QAT fine-tune-and-benchmark trial that speaks quantune's trial protocol with
# nothing but POSIX sh and awk. It models the real trade-off: lower-precision formats decode
# faster but lose quality, and the learning rate has a sweet spot. Used by
# configs/quickstart.toml until the built-in QAT workload lands.
#
# usage: qat_sim.sh LEARNING_RATE BATCH_SIZE QUANTIZATION [STEPS]
set -eu
lr=$1
bs=$2
quant=$3
steps=${4:-5}
: "${QUANTUNE_METRICS_FILE:?run this through quantune (QUANTUNE_METRICS_FILE is not set)}"

awk -v lr="$lr" -v bs="$bs" -v q="$quant" -v steps="$steps" -v trial="${QUANTUNE_TRIAL:-0}" '
BEGIN {
    # Bits per weight and speed-up of each format over bf16.
    if (q == "bf16") { bits = 16; speed = 1.0 }
    else if (q == "int8") { bits = 8; speed = 1.7 }
    else if (q == "int4") { bits = 4; speed = 2.6 }
    else { print "unknown quantization " q > "/dev/stderr"; exit 3 }
    # Quality: distance of log10(lr) from the sweet spot 10^-3.7, plus the format penalty.
    d = (log(lr) / log(10)) + 3.7
    penalty = (16 - bits) * (16 - bits) * 0.0003
    loss0 = 2.9
    for (s = 1; s <= steps; s++) {
        loss = 2.2 + (loss0 - 2.2) * exp(-s * 0.6) + 0.05 * d * d + penalty
        printf "{\"step\": %d, \"eval_loss\": %.6f}\n", s * 100, loss >> ENVIRON["QUANTUNE_METRICS_FILE"]
    }
    delta = 0.05 * d * d * 0.4 + penalty + 0.002 * (bs / 64)
    latency = 21.0 / speed * (1 + 0.002 * bs)
    throughput = 1000.0 / latency * bs / (1 + 0.01 * bs)
    printf "{\"latency_ms\": %.4f, \"throughput_tok_s\": %.3f, \"eval_loss\": %.6f, \"eval_loss_delta\": %.6f, \"weight_mib\": %.2f}\n", latency, throughput, loss, delta, 1100 * bits / 16 >> ENVIRON["QUANTUNE_METRICS_FILE"]
}'
