/* Vision-encoder glue kernels: patch extraction (im2col for the 14x14 stride-14
 * patch convolution, so the convolution itself is one GEMM) and token assembly
 * (CLS token, conv bias and absolute position embedding). */

/* pixels: n_img x [3][S][S];  cols: (n_img*G*G) x (3*P*P), column index
 * c*P*P + ky*P + kx (the order of a flattened Conv2d weight [W][3][P][P]).
 * global: (3*P*P, n_img*G*G). */
__kernel void af_vit_im2col(__global const float *pixels, __global float *cols, const int S, const int P,
                            const int n_patches_total) {
  int col = get_global_id(0);
  int row = get_global_id(1);
  int PP = P * P;
  if (col >= 3 * PP || row >= n_patches_total) return;
  int G = S / P, GG = G * G;
  int img = row / GG, t = row % GG, gy = t / G, gx = t % G;
  int c = col / PP, r = col % PP, ky = r / P, kx = r % P;
  cols[(size_t)row * (3 * PP) + col] = pixels[(((size_t)img * 3 + c) * S + gy * P + ky) * S + gx * P + kx];
}

/* x: n_img x [1+GG][W]; patches: (n_img*GG) x W (conv without bias).
 * x[b][0] = cls + pos[0];  x[b][1+t] = patches[b*GG+t] + bias + pos[1+t].
 * global: (W, n_img*(1+GG)). */
__kernel void af_vit_assemble(__global const float *patches, __global const float *bias,
                              __global const float *cls, __global const float *pos, __global float *x,
                              const int W, const int GG, const int n_rows) {
  int i = get_global_id(0);
  int row = get_global_id(1);
  if (i >= W || row >= n_rows) return;
  int T = GG + 1, img = row / T, t = row % T;
  float v = t == 0 ? cls[i] : patches[((size_t)img * GG + (t - 1)) * W + i] + bias[i];
  x[(size_t)row * W + i] = v + pos[(size_t)t * W + i];
}
