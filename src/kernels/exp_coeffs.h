/* exp_coeffs.h — the constants of the vector e^x (exp_avx512.h, exp_avx2.h): ln 2 in two parts for the
 * range reduction r = x - n ln2, and Cephes' degree-6 polynomial for e^r, highest term first. */
#ifndef KILN_EXP_COEFFS_H
#define KILN_EXP_COEFFS_H

#define KERN_EXP_LOG2E 1.44269504088896341f
#define KERN_EXP_LN2_HI 0.693359375f
#define KERN_EXP_LN2_LO (-2.12194440e-4f)
#define KERN_EXP_P0 1.9875691500e-4f
#define KERN_EXP_P1 1.3981999507e-3f
#define KERN_EXP_P2 8.3334519073e-3f
#define KERN_EXP_P3 4.1665795894e-2f
#define KERN_EXP_P4 1.6666665459e-1f
#define KERN_EXP_P5 5.0000001201e-1f

#endif
