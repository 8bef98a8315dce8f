#!/bin/sh
# hello-sensor: print one reading derived from the model file, as a Waggle plugin would publish it.
weights=/models/weights.bin
size=$(wc -c < "$weights")
checksum=$(md5sum "$weights" | cut -c1-8)
echo "${GREETING:-hello} from hello-sensor: model ${size} bytes (md5 ${checksum}), interval ${INTERVAL:-30}s"
