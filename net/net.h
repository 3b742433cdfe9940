/* The network's public face: what stage adapters (stages/) call.  Stages
 * include this header only (tools/check-rooms.sh checks it); the CLI and the
 * tests may use the pieces below directly.
 *   net/vision.h    af_vit (EVA ViT-g + ln_vision), af_qformer (Q-Former +
 *                   projection): probe the shape, build for a batch, reserve
 *                   the buffers, run.
 *   net/generate.h  text generation for a batch of images (prompt, prefill,
 *                   decode, stops, answers), results and callbacks only.
 *   net/chat.h      the original demo's multi-turn chat.
 *   net/score.h     scoring candidate answers (tagging): log-likelihoods of
 *                   labels after a question, on one shared prefix per image. */
#ifndef AF_NET_NET_H
#define AF_NET_NET_H

#include "net/chat.h"
#include "net/generate.h"
#include "net/score.h"
#include "net/vision.h"

#endif
