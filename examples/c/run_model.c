/* Run a lucid artifact from C, with no Python.
 *
 *   python -c "import lucid; lucid.export(lucid.models.resnet_18(), lucid.randn(1, 3, 224, 224), 'art')"
 *   cc -O2 -I art examples/c/run_model.c art/model.so -Wl,-rpath,"$PWD/art" -o run_model
 *   ./run_model art out input0.bin          # input0.bin: raw float32, C order
 *
 * (or `make -C examples/c ARTIFACT=../../art`). It reads ARTIFACT/weights.bin into one
 * 64-byte aligned buffer, reads one raw file per input (their sizes must match model.h),
 * runs the model once and writes output k to OUT<k>.bin (raw, C order), printing each
 * output's size and first values. Without input files it runs on zeros. Exit status 0 on
 * success, 1 on any error (message on stderr).
 *
 * model.h (written by lucid.export) declares the API and every input's and output's shape
 * and dtype; this file only uses its model-independent names (LUCID_MODEL_..., lucid_model_...),
 * so it builds against any artifact. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static void *read_file(const char *path, size_t expect, size_t align)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "run_model: cannot open %s\n", path);
        return NULL;
    }
    void *buf = NULL;
    size_t room = expect ? expect : 1;
    room = (room + align - 1) / align * align;
    if (posix_memalign(&buf, align, room) != 0) {
        fprintf(stderr, "run_model: out of memory for %s\n", path);
        fclose(f);
        return NULL;
    }
    size_t got = fread(buf, 1, expect, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != expect || extra) {
        fprintf(stderr, "run_model: %s must hold exactly %zu bytes\n", path, expect);
        free(buf);
        return NULL;
    }
    return buf;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 3 + LUCID_MODEL_NUM_INPUTS) {
        fprintf(stderr, "usage: %s ARTIFACT_DIR OUT_PREFIX [INPUT.bin x %d]\n", argv[0], LUCID_MODEL_NUM_INPUTS);
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", argv[1], LUCID_MODEL_WEIGHTS_FILE);
    void *weights = read_file(path, LUCID_MODEL_WEIGHTS_BYTES, LUCID_MODEL_WEIGHTS_ALIGN);
    if (!weights)
        return 1;

    const void *inputs[LUCID_MODEL_NUM_INPUTS + 1];
    void *outputs[LUCID_MODEL_NUM_OUTPUTS + 1];
    for (int i = 0; i < LUCID_MODEL_NUM_INPUTS; i++) {
        if (3 + i < argc) {
            inputs[i] = read_file(argv[3 + i], lucid_model_input_bytes[i], 64);
        } else {
            inputs[i] = calloc(1, lucid_model_input_bytes[i] ? lucid_model_input_bytes[i] : 1);
        }
        if (!inputs[i])
            return 1;
    }
    for (int k = 0; k < LUCID_MODEL_NUM_OUTPUTS; k++) {
        outputs[k] = malloc(lucid_model_output_bytes[k] ? lucid_model_output_bytes[k] : 1);
        if (!outputs[k])
            return 1;
    }
    void *workspace = malloc(lucid_model_workspace_size());
    if (!workspace)
        return 1;

    int rc = lucid_model_run(weights, inputs, outputs, workspace);
    if (rc != 0) {
        fprintf(stderr, "run_model: %s_run returned %d\n", LUCID_MODEL_NAME, rc);
        return 1;
    }

    for (int k = 0; k < LUCID_MODEL_NUM_OUTPUTS; k++) {
        size_t bytes = lucid_model_output_bytes[k];
        printf("output %d (%s): %zu bytes", k, lucid_model_output_names[k], bytes);
        if (lucid_model_output_dtypes[k] == 0) {
            const float *v = outputs[k];
            size_t n = bytes / sizeof(float);
            printf(", float32:");
            for (size_t j = 0; j < n && j < 5; j++)
                printf(" %g", v[j]);
            if (n > 5)
                printf(" ...");
        }
        printf("\n");
        snprintf(path, sizeof path, "%s%d.bin", argv[2], k);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(outputs[k], 1, bytes, f) != bytes) {
            fprintf(stderr, "run_model: cannot write %s\n", path);
            return 1;
        }
        fclose(f);
    }
    return 0;
}
