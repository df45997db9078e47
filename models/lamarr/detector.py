"""A compact LHCb-like *detailed* detector simulation (numba): the ground truth Lamarr is trained on.

:func:`simulate` takes a generator table (:func:`models.lamarr.generator.generate`) and returns it with
the detector response added (see :data:`COLUMNS`).  Every particle is transported through a
layered LHCb-like detector like a (much simplified) Geant4 and then reconstructed from its hits.

Coordinates and units: LHCb frame (z along the beam, y up, dipole field B_y bending in x), mm, GeV,
T, rad; slopes tx = px/pz, ty = py/pz; q/p in c/GeV.

Simulation (per particle, :func:`_sim_particle`)
------------------------------------------------
- Geometry (z in mm; sources next to each constant below): VELO 21 stations (-175 .. 735 mm, silicon
  8.2 < r < 42 mm) with an RF foil; VELO exit window; RICH1 (C4F10, 1.0-2.16 m); UT, 4 layers
  (x-u-v-x, +-5 deg stereo) at 2.33-2.64 m; dipole magnet; T stations, 3 x 4 layers (x-u-v-x) at
  7.9/8.6/9.3 m with a beam-pipe hole; RICH2 (CF4, 9.5-11.8 m); ECAL (Pb/scintillator), HCAL
  (Fe/scintillator), muon stations M2-M5 with 80 cm iron filters in between.
- Field: B_y(z) = B0 exp(-(z - zc)^2 / (2 sigma^2)), zc = 5.3 m, sigma chosen so that the integral
  is 4 T m (the quoted bending power), truncated where it drops below 1 mT (|z - zc| > 3.73 sigma):
  a smooth bell whose fringe reaches the UT (about 0.13 T m upstream of the UT) and the T stations.
  Uniform in x and y (no B_x, B_z): a simplification.
- Transport: 4th-order Runge-Kutta in z (step 10 mm inside the field region, exact straight lines
  outside it); at every material layer multiple scattering (Highland, Gaussian, PDG RPP 2024
  eq. 34.16), mean energy loss (Bethe with the high-energy density-effect limit, PDG eq. 34.5/34.6;
  no Landau fluctuations), bremsstrahlung for electrons (Bethe-Heitler fraction sampling) and, for
  hadrons, nuclear interactions with the material's interaction length (1.2 lambda_I for pi/K, an
  assumption; a hadron interacting in the tracking volume is lost).  Calorimeters and iron are
  stepped in 11-20 mm slices.  Electrons stop in the ECAL.  Hadrons interacting in the calorimeters
  or iron continue with probability 0.5 as a "leading particle" with a uniform fraction of the
  momentum and a ~0.35 GeV transverse kick (a crude punch-through model, an assumption).
- Decays in flight: pi -> mu nu (c tau = 7.8045 m), K -> mu nu (c tau = 3.711 m, BR 63.56 %),
  other K decays treated as K -> pi pi0 (PDG 2024); isotropic two-body kinematics; the proper
  distance is consumed along the path with the running momentum.
- Air (X0 = 304 m) fills the space between the detectors (500 mm slices).  A VELO station's material
  (sensors + RF foil as silicon of equal X0) is crossed only inside its sensors (8.2 < r < 42 mm).
- Hits: VELO x and y (12 um), UT and T strips measuring u = x cos(a) + y sin(a) (50 um, 200 um),
  muon pads (the pad centre, pad sizes per station and region), each with a per-layer efficiency.
  The magnet's aperture (|x| < 0.35 z, |y| < 0.30 z inside 2.8-7.8 m, an assumption slightly wider
  than the quoted 300/250 mrad acceptance) absorbs what hits it.

Reconstruction (per particle, :func:`_reconstruct`)
---------------------------------------------------
- ``in_acceptance``: the ideal (field, no material) trajectory from the vertex crosses the active
  area of >= 3 VELO stations and of >= 3 of the 4 UT layers.
- Track types from the hits (in acceptance only): long = >= 3 VELO hits and >= 8 of 12 T hits (UT
  hits added when >= 3); upstream = VELO + >= 3 UT hits, no T; downstream = UT + T, < 3 VELO hits.
  No pattern recognition (perfect hit association), no ghosts or clones: a simplification.
- Track fit: a global least-squares fit of the 5 parameters (x, y, tx, ty, q/p) of the *first*
  segment of the trajectory (before any scattering), expressed at z = 0, to all the track's hits,
  with the full hit covariance: hit resolutions plus the multiple-scattering correlations of every
  material layer between the first and last hit (Highland at the current momentum estimate).  The
  model is the Runge-Kutta propagator (step 40 mm) with the pion-hypothesis mean energy loss;
  Gauss-Newton with numerical derivatives, seeded by straight-line VELO / UT fits, a parabolic T fit
  and the p-kick estimate.  So q/p of long tracks comes from the kick between VELO and T, upstream
  tracks from the fringe field between VELO and UT, downstream tracks from UT + T (their position
  at z = 0 is the UT segment extrapolated back).  Covariance = inverse of the fit's normal matrix;
  ``chi2ndof`` the fit's chi2 / (n_hits - 5); tracks with chi2ndof > 5 are not reconstructed.
- RICH: Cherenkov photons from the true particle at the radiator (its current species and
  momentum, so decays in flight count): N ~ Poisson(N_emit sin^2(theta) / sin^2(theta_max)) emitted,
  each detected with efficiency 0.25, angle smeared by the per-photon resolution plus the track's
  reconstructed-direction error; Poisson(background) photons flat in [0, window].  Likelihood per
  hypothesis (e, mu, pi, K, p, at the reconstructed momentum): extended likelihood of the photons
  (Gaussian around the expected angle over a flat background) and of their number (captures
  thresholds).  ``rich_dll_h`` = log L(h) - log L(pi), summed over the radiators the track sees
  (long: RICH1 + RICH2, upstream: RICH1, downstream: RICH2); 0 where no radiator saw the track.
- Muon system: the fitted track is extrapolated to M2-M5; the multiple-scattering width there is
  computed (muon hypothesis, mean losses) through RICH2, ECAL, HCAL and the filters; the field of
  interest is +-(pad/2 + 3 sigma); random background hits (density ~ 1/r^2, scaled with n_tracks, an
  assumption) are added inside it.  ``is_muon`` (long/downstream, p > 3 GeV) uses the standard
  momentum-dependent station requirements (JINST 8 (2013) P10020): 3-6 GeV M2 & M3; 6-10 GeV
  M2 & M3 & (M4 | M5); > 10 GeV M2 & M3 & M4 & M5.  ``muon_dll`` = sum over stations of
  log[L_mu / L_non-mu] of the closest hit in the FOI (muon: reach probability x efficiency x
  Gaussian residual + background; non-muon: uniform background/punch-through), or of "no hit";
  computed for long/downstream tracks with p > 3 GeV, 0 for the other reconstructed tracks.  The
  FOI windows are our physics-based choice (the paper's are tuned on simulation).
- Debug columns: hit counts, detected photons per RICH, ``decayed_in_flight``,
  ``hadronic_interaction`` (anywhere, calorimeters included), ``in_muon_acceptance`` (the track's
  extrapolation lies in the active area of M2 and M5; long/downstream tracks with p > 3 GeV).
- Global PID (our combination): pid_e = rich_dll_e, pid_mu = rich_dll_mu + muon_dll,
  pid_k = rich_dll_k, pid_p = rich_dll_p (no calorimeter PID is modelled).

Determinism: numba's generator is seeded inside the compiled kernel and particles are processed in
row order, so the same table and seed give the same frame.  Functions are compiled with
``cache=True`` (numba falls back silently when the cache folder is not writable).

Main sources: LHCb detector paper, JINST 3 (2008) S08005 ("JINST-S08005"); LHCb performance,
Int. J. Mod. Phys. A 30 (2015) 1530022 ("IJMPA-2015"); RICH performance, Eur. Phys. J. C 73 (2013)
2431 ("RICH-2013"); D'Ambrosio et al., arXiv:1703.09927 ("RICH-2017"); muon identification,
JINST 8 (2013) P10020 ("MUID-2013"); PDG RPP 2024 and the PDG atomic and nuclear properties
tables ("PDG-mat").
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
from numba import njit

from models.errors import SimError

# ---------------------------------------------------------------- constants
C_LIGHT = 2.99792458e-4  # GeV / (T mm): p[GeV] = 0.2998 B[T] R[m]
K_BETHE = 0.307075  # MeV mol^-1 cm^2, PDG RPP 2024 Table 34.1
M_E_MEV = 0.51099895  # PDG
# species index: 0 e, 1 mu, 2 pi, 3 K, 4 p
SPECIES_PDG = np.array([11, 13, 211, 321, 2212])
MASS_GEV = np.array([0.00051099895, 0.1056583755, 0.13957039, 0.493677, 0.93827208816])  # PDG 2024
CTAU_PI_MM = 7804.5  # PDG 2024
CTAU_K_MM = 3711.0  # PDG 2024
CTAU_MU_MM = 658640.0  # PDG 2024
BR_K_MUNU = 0.6356  # PDG 2024
M_PI0_GEV = 0.1349768  # PDG 2024

# ---------------------------------------------------------------- materials (PDG-mat)
# columns: X0 [mm], <Z/A>, density [g/cm3], I [eV], nuclear interaction length lambda_I [mm]
SI, AL, FE, PB, POLY, CARB, C4F10, CF4, GLASS, AIR = range(10)
MAT = np.array([
    [93.70, 0.49848, 2.329, 173.0, 465.2],  # silicon (PDG-mat)
    [88.97, 0.48181, 2.699, 166.0, 397.0],  # aluminium (PDG-mat)
    [17.57, 0.46557, 7.874, 286.0, 167.7],  # iron (PDG-mat)
    [5.612, 0.39575, 11.35, 823.0, 175.9],  # lead (PDG-mat)
    [413.1, 0.53768, 1.060, 68.7, 770.7],  # polystyrene scintillator (PDG-mat)
    [213.5, 0.49955, 2.000, 78.0, 429.0],  # carbon fibre, rho = 2.0 assumed (carbon X0, lambda_I: PDG-mat)
    # C4F10 / CF4 gas at 20 C, 1 atm (ideal gas density); X0, lambda_I from the elements (PDG-mat);
    # I values are assumptions
    [35010.0, 0.47899, 0.00986, 110.0, 961500.0],
    [92870.0, 0.47727, 0.00366, 115.0, 2612000.0],
    [123.0, 0.49930, 2.200, 139.2, 445.0],  # fused silica (mirror glass) (PDG-mat)
    [303900.0, 0.49919, 0.001205, 85.7, 747700.0],  # dry air at 20 C, 1 atm (PDG-mat)
])
HADRON_LAMBDA_FACTOR = np.array([0.0, 0.0, 1.2, 1.2, 1.0])  # x lambda_I; 0 = no nuclear interaction (assumption)

# ---------------------------------------------------------------- geometry
# VELO: 21 stations from -175 to 735 mm, silicon sensors with 8.2 < r < 42 mm, 300 um thick r and phi
# sensors per station (JINST-S08005 sec. 5.1); station z positions approximate its Fig. 5.1 layout.
VELO_Z_MM = np.array([-175., -145., -115., -85., -55., -25., 5., 35., 65., 95., 125., 155., 185., 215., 245.,
                      275., 435., 585., 635., 685., 735.])
VELO_RMIN_MM, VELO_RMAX_MM = 8.2, 42.0  # JINST-S08005 sec. 5.1
VELO_SI_MM = 0.6  # r + phi sensors, 2 x 300 um (JINST-S08005 sec. 5.1)
VELO_FOIL_AL_MM = 0.25  # RF foil, 250-300 um Al (JINST-S08005 sec. 5.1); one crossing per station, assumption
# the foil is added to the station as the silicon thickness of equal radiation length; both are crossed only
# inside the sensors' active area (a particle in the beam hole or outside the sensors crosses neither)
VELO_MAT_SI_MM = VELO_SI_MM + VELO_FOIL_AL_MM * 93.70 / 88.97
VELO_EXIT_WINDOW_Z_MM, VELO_EXIT_WINDOW_AL_MM = 800.0, 2.0  # assumption
VELO_SIGMA_MM = 0.012  # assumption within the 4-20 um hit resolutions of JINST 9 (2014) P09007
VELO_EFF = 0.99  # assumption (cluster efficiency > 99 %, JINST 9 (2014) P09007)
# RICH1: z 990-2165 mm, C4F10 n - 1 = 0.0014, acceptance 25-300 (x) / 25-250 (y) mrad (JINST-S08005 sec. 6.1)
RICH1_Z_MM = (990.0, 2165.0)
RICH1_RECORD_Z_MM = 1450.0
RICH1_N_MINUS_1 = 0.0014
RICH1_NPE = 30.0  # detected photoelectrons for beta = 1 (RICH-2017 table, current RICH1 C4F10)
RICH1_SIGMA_RAD = 1.618e-3  # per-photon Cherenkov angle resolution (RICH-2013)
RICH1_ACC = (0.025, 0.300, 0.250)  # theta_min, |tx| max, |ty| max
RICH1_WINDOW_RAD = 0.065  # ring search window (assumption)
RICH1_BKG = 4.0  # background photons in the window at n_tracks = 20 (assumption)
# RICH2: z 9500-11832 mm, CF4 n - 1 = 0.0005, acceptance 15-120 (x) / 15-100 (y) mrad (JINST-S08005 sec. 6.1)
RICH2_Z_MM = (9500.0, 11832.0)
RICH2_RECORD_Z_MM = 10500.0
RICH2_N_MINUS_1 = 0.0005
RICH2_NPE = 22.0  # (RICH-2017 table, RICH2 CF4)
RICH2_SIGMA_RAD = 0.68e-3  # (RICH-2013)
RICH2_ACC = (0.015, 0.120, 0.100)
RICH2_WINDOW_RAD = 0.040  # assumption
RICH2_BKG = 3.0  # assumption
RICH_DET_EFF = 0.25  # photon detection efficiency folded into the yields above (assumption)
# UT: 4 layers x-u-v-x, +-5 deg stereo (as the TT, JINST-S08005 sec. 5.2), ~1.5 m x 1.3 m active
UT_Z_MM = np.array([2327.5, 2372.5, 2597.5, 2642.5])  # assumption, UT TDR CERN-LHCC-2014-001 layout
UT_STEREO_RAD = np.array([0.0, 5.0, -5.0, 0.0]) * np.pi / 180.0
UT_HALF_X_MM, UT_HALF_Y_MM, UT_HOLE_R_MM = 750.0, 650.0, 35.0  # hole radius: assumption
UT_SI_MM, UT_SUPPORT_C_MM = 0.32, 1.0  # sensor + stave (assumption, ~0.8 % X0 per layer)
UT_SIGMA_MM = 0.050  # ~ pitch / sqrt(12) (183 um pitch, JINST-S08005 sec. 5.2)
UT_EFF = 0.99  # assumption
# T stations: 3 x 4 layers (x-u-v-x, +-5 deg) near z = 7.9, 8.6, 9.3 m; x active +-3 m, y +-2.5 m
# (JINST-S08005 sec. 5.3); SciFi-like material (SciFi TDR CERN-LHCC-2014-001), hit resolution of the Run 1-2
# Outer Tracker
T_STATION_Z_MM = np.array([7900.0, 8600.0, 9300.0])
T_LAYER_OFFSETS_MM = np.array([-60.0, -20.0, 20.0, 60.0])  # assumption
T_STEREO_RAD = np.array([0.0, 5.0, -5.0, 0.0]) * np.pi / 180.0
T_HALF_X_MM, T_HALF_Y_MM, T_HOLE_MM = 3000.0, 2500.0, 100.0  # hole half-size: assumption
T_FIBRE_MM, T_SUPPORT_C_MM = 1.35, 1.3  # ~1 % X0 per layer (assumption)
T_SIGMA_MM = 0.200  # Outer-Tracker-like hit resolution (~200 um, JINST-S08005 sec. 5.3 / IJMPA-2015)
T_EFF = 0.98  # assumption
# Magnet: integrated field 4 T m (JINST-S08005 sec. 4.1); centre 5.3 m and peak 1.05 T: assumptions
MAG_ZC_MM = 5300.0
MAG_BDL_TMM = 4000.0
MAG_B0_T = 1.05
MAG_SIGMA_MM = MAG_BDL_TMM / (MAG_B0_T * math.sqrt(2.0 * math.pi))
MAG_UCUT = math.sqrt(2.0 * math.log(MAG_B0_T / 1e-3))  # truncated below 1 mT
FZ_LO, FZ_HI = MAG_ZC_MM - MAG_UCUT * MAG_SIGMA_MM, MAG_ZC_MM + MAG_UCUT * MAG_SIGMA_MM
APERTURE_Z_MM = (2800.0, 7800.0)
# air (not inside the RICH gas volumes): 500 mm slices centred at these z
AIR_SLICES_Z_MM = np.array([2450.0, 2950.0, 3450.0, 3950.0, 4450.0, 4950.0, 5450.0, 5950.0, 6450.0, 6950.0,
                            7450.0, 8250.0, 8950.0, 12150.0])
# Calorimeters (JINST-S08005 sec. 6.2): ECAL at 12.5 m, 66 x (2 mm Pb + 4 mm scintillator), 25 X0;
# HCAL at 13.33 m, Fe:scintillator 16:4 mm, 5.6 lambda_I, 1.65 m deep.
ECAL_Z_MM, ECAL_PB_MM, ECAL_SC_MM = 12520.0, 132.0, 264.0
HCAL_Z_MM, HCAL_DEPTH_MM = 13330.0, 1650.0
# Muon: M2-M5 at z ~ 15.2, 16.4, 17.6, 18.8 m with 80 cm iron filters between them; the calorimeters +
# iron total ~20 lambda_I; acceptance 20 (16) - 306 (258) mrad in x (y) (JINST-S08005 sec. 6.3)
MUON_Z_MM = np.array([15200.0, 16400.0, 17600.0, 18800.0])
MUON_FILTER_FE_MM = 800.0
# logical pad sizes (x, y) in region R1, doubling per region R1 -> R4 (JINST-S08005 sec. 6.3)
MUON_PAD_R1_MM = np.array([[6.3, 31.0], [6.7, 34.0], [29.0, 36.0], [31.0, 39.0]])
MUON_R1_HALF = (0.0397, 0.0331)  # R1 half-size / z (48 x 40 cm at M1, 12.1 m; projective)
MUON_HOLE = (0.020, 0.016)  # inner acceptance, rad
MUON_EFF = 0.99  # per station, assumption (station efficiencies > 99 %, JINST 8 (2013) P02022)
MUON_BKG_PER_MM2 = 0.3e-6  # background hits per mm^2 at r = 1 m, n_tracks = 20 (assumption), ~1/r^2
MUON_PT_PROB = 0.01  # chance that a non-muon leaves a hit in a station's FOI (assumption, for the DLL)
LEAD_SURVIVE = 0.5  # leading-particle continuation probability per hadronic interaction (assumption)
LEAD_PT_GEV = 0.35  # assumption

STEP_SIM_MM = 10.0
STEP_FIT_MM = 40.0
CHI2NDOF_MAX = 5.0
P_MUON_MIN_GEV = 3.0

# layer kinds
K_PASSIVE, K_VELO, K_UT, K_T, K_MUON, K_RICH1, K_RICH2, K_CALO = range(8)


def _build_layers():
    rows = []  # (z, kind, idx, material, thickness_mm, stereo)
    for k, z in enumerate(VELO_Z_MM):
        rows.append((z, K_VELO, k, SI, VELO_MAT_SI_MM, 0.0))
    for z in AIR_SLICES_Z_MM:  # air between the detectors, one layer per 500 mm
        rows.append((z, K_PASSIVE, -1, AIR, 500.0, 0.0))
    rows.append((VELO_EXIT_WINDOW_Z_MM, K_PASSIVE, -1, AL, VELO_EXIT_WINDOW_AL_MM, 0.0))
    # RICH1 (split of the ~8 % X0 of JINST-S08005 without aerogel: our assumption)
    rows.append((RICH1_Z_MM[0] + 10.0, K_PASSIVE, -1, AL, 1.0, 0.0))  # entrance window
    for zc in (1150.0, 1450.0, 1750.0):
        rows.append((zc, K_PASSIVE, -1, C4F10, 300.0, 0.0))  # gas in 3 slices
    rows.append((RICH1_RECORD_Z_MM + 0.5, K_RICH1, 0, -1, 0.0, 0.0))
    rows.append((1900.0, K_PASSIVE, -1, CARB, 3.2, 0.0))  # spherical mirror, 1.5 % X0 carbon fibre
    rows.append((RICH1_Z_MM[1] - 5.0, K_PASSIVE, -1, AL, 1.0, 0.0))  # exit window
    for k, z in enumerate(UT_Z_MM):
        rows.append((z - 1.0, K_PASSIVE, -1, CARB, UT_SUPPORT_C_MM, 0.0))
        rows.append((z, K_UT, k, SI, UT_SI_MM, UT_STEREO_RAD[k]))
    for s, zc in enumerate(T_STATION_Z_MM):
        for j, dz in enumerate(T_LAYER_OFFSETS_MM):
            rows.append((zc + dz - 1.0, K_PASSIVE, -1, CARB, T_SUPPORT_C_MM, 0.0))
            rows.append((zc + dz, K_T, 4 * s + j, POLY, T_FIBRE_MM, T_STEREO_RAD[j]))
    # RICH2 (~15 % X0, JINST-S08005 sec. 6.1; split an assumption): windows, CF4, two glass mirror planes
    rows.append((RICH2_Z_MM[0] + 10.0, K_PASSIVE, -1, CARB, 2.1, 0.0))
    for zc in (9700.0, 10060.0, 10420.0, 10780.0, 11140.0):
        rows.append((zc, K_PASSIVE, -1, CF4, 360.0, 0.0))
    rows.append((RICH2_RECORD_Z_MM + 0.5, K_RICH2, 0, -1, 0.0, 0.0))
    rows.append((11400.0, K_PASSIVE, -1, GLASS, 6.0, 0.0))
    rows.append((11600.0, K_PASSIVE, -1, GLASS, 6.0, 0.0))
    rows.append((RICH2_Z_MM[1] - 5.0, K_PASSIVE, -1, AL, 1.0, 0.0))
    # ECAL: 12 slices of 11 mm Pb interleaved with 12 slices of 22 mm scintillator over 420 mm
    for i in range(12):
        rows.append((ECAL_Z_MM + 35.0 * i, K_CALO, -1, PB, ECAL_PB_MM / 12, 0.0))
        rows.append((ECAL_Z_MM + 35.0 * i + 17.0, K_CALO, -1, POLY, ECAL_SC_MM / 12, 0.0))
    # HCAL: 16 mm Fe + 4 mm scintillator per 20 mm
    for i in range(int(HCAL_DEPTH_MM // 20)):
        rows.append((HCAL_Z_MM + 20.0 * i, K_CALO, -1, FE, 16.0, 0.0))
        rows.append((HCAL_Z_MM + 20.0 * i + 10.0, K_CALO, -1, POLY, 4.0, 0.0))
    for s, z in enumerate(MUON_Z_MM):
        rows.append((z, K_MUON, s, -1, 0.0, 0.0))
        if s < 3:  # iron filter centred between this station and the next, 40 slices of 20 mm
            z0 = 0.5 * (z + MUON_Z_MM[s + 1]) - 0.5 * MUON_FILTER_FE_MM
            for i in range(40):
                rows.append((z0 + 20.0 * i + 10.0, K_CALO, -1, FE, 20.0, 0.0))
    rows.sort(key=lambda r: r[0])
    a = np.array(rows, dtype=np.float64)
    return (a[:, 0].copy(), a[:, 1].astype(np.int64), a[:, 2].astype(np.int64), a[:, 3].astype(np.int64),
            a[:, 4].copy(), a[:, 5].copy())


L_Z, L_KIND, L_IDX, L_MAT, L_THK, L_STEREO = _build_layers()


def _build_scatterers():
    """Material layers of the tracking volume (up to the last T layer) for the fit's noise model, layers
    closer than 2 mm merged (x/X0 summed)."""
    zs, xs, velo = [], [], []
    for z, m, t, k in zip(L_Z, L_MAT, L_THK, L_KIND):
        if m < 0 or z > T_STATION_Z_MM[-1] + 100.0:
            continue
        x = t / MAT[m, 0]
        if zs and z - zs[-1] < 2.0 and k != K_VELO and not velo[-1]:
            xs[-1] += x
            zs[-1] = z
        else:
            zs.append(z)
            xs.append(x)
            velo.append(k == K_VELO)
    return np.array(zs), np.array(xs), np.array(velo)


SC_Z, SC_X0, SC_VELO = _build_scatterers()

# ---------------------------------------------------------------- numba kernels: physics


@njit(cache=True)
def _by(z):
    u = (z - MAG_ZC_MM) / MAG_SIGMA_MM
    if u > MAG_UCUT or u < -MAG_UCUT:
        return 0.0
    return MAG_B0_T * math.exp(-0.5 * u * u)


@njit(cache=True)
def _rk4(x, y, tx, ty, qop, z, h):
    """One RK4 step of length h in z through B_y(z)."""
    b1 = _by(z)
    b2 = _by(z + 0.5 * h)
    b3 = _by(z + h)
    kq = C_LIGHT * qop
    n1 = math.sqrt(1.0 + tx * tx + ty * ty) * kq * b1
    a1x, a1y = -n1 * (1.0 + tx * tx), -n1 * tx * ty
    tx2, ty2 = tx + 0.5 * h * a1x, ty + 0.5 * h * a1y
    n2 = math.sqrt(1.0 + tx2 * tx2 + ty2 * ty2) * kq * b2
    a2x, a2y = -n2 * (1.0 + tx2 * tx2), -n2 * tx2 * ty2
    tx3, ty3 = tx + 0.5 * h * a2x, ty + 0.5 * h * a2y
    n3 = math.sqrt(1.0 + tx3 * tx3 + ty3 * ty3) * kq * b2
    a3x, a3y = -n3 * (1.0 + tx3 * tx3), -n3 * tx3 * ty3
    tx4, ty4 = tx + h * a3x, ty + h * a3y
    n4 = math.sqrt(1.0 + tx4 * tx4 + ty4 * ty4) * kq * b3
    a4x, a4y = -n4 * (1.0 + tx4 * tx4), -n4 * tx4 * ty4
    x += h / 6.0 * (tx + 2.0 * tx2 + 2.0 * tx3 + tx4)
    y += h / 6.0 * (ty + 2.0 * ty2 + 2.0 * ty3 + ty4)
    tx += h / 6.0 * (a1x + 2.0 * a2x + 2.0 * a3x + a4x)
    ty += h / 6.0 * (a1y + 2.0 * a2y + 2.0 * a3y + a4y)
    return x, y, tx, ty


@njit(cache=True)
def _transport(x, y, tx, ty, qop, za, zb, step):
    """Deterministic transport (no material) from za to zb (either direction)."""
    if za == zb:
        return x, y, tx, ty
    d = 1.0 if zb > za else -1.0
    if d > 0:
        zin, zout = max(za, FZ_LO), min(zb, FZ_HI)
        inside = zin < zout
    else:
        zin, zout = min(za, FZ_HI), max(zb, FZ_LO)
        inside = zin > zout
    if not inside:
        return x + tx * (zb - za), y + ty * (zb - za), tx, ty
    x += tx * (zin - za)
    y += ty * (zin - za)
    n = int(math.ceil(abs(zout - zin) / step))
    h = (zout - zin) / n
    z = zin
    for _ in range(n):
        x, y, tx, ty = _rk4(x, y, tx, ty, qop, z, h)
        z += h
    x += tx * (zb - zout)
    y += ty * (zb - zout)
    return x, y, tx, ty


@njit(cache=True)
def _dedx_mev_mm(mat, p, m):
    """Mean ionisation loss (Bethe, PDG eq. 34.5, high-energy density-effect limit eq. 34.6), MeV / mm."""
    za, rho, i_ev = MAT[mat, 1], MAT[mat, 2], MAT[mat, 3]
    bg = p / m
    b2 = bg * bg / (1.0 + bg * bg)
    g = math.sqrt(1.0 + bg * bg)
    me = M_E_MEV * 1e-3
    tmax = 2.0 * M_E_MEV * bg * bg / (1.0 + 2.0 * g * me / m + (me / m) ** 2)  # MeV
    i_mev = i_ev * 1e-6
    hw = 28.816e-6 * math.sqrt(rho * za)  # plasma energy, MeV
    delta = 2.0 * (math.log(hw / i_mev) + math.log(bg)) - 1.0
    if delta < 0.0:
        delta = 0.0
    arg = 2.0 * M_E_MEV * bg * bg * tmax / (i_mev * i_mev)
    val = K_BETHE * za / b2 * (0.5 * math.log(arg) - b2 - 0.5 * delta)
    if val < 0.0:
        val = 0.0
    return val * rho * 0.1


@njit(cache=True)
def _highland(p, m, x0frac):
    """Highland width (rad) for path length x0frac radiation lengths (PDG eq. 34.16), unit charge."""
    if x0frac <= 0.0:
        return 0.0
    e = math.sqrt(p * p + m * m)
    beta = p / e
    return 0.0136 / (beta * p) * math.sqrt(x0frac) * (1.0 + 0.038 * math.log(x0frac / (beta * beta)))


@njit(cache=True)
def _rotate(tx, ty, th, ph):
    """Turn the direction (tx, ty, 1) by polar angle th at azimuth ph around itself; returns tx, ty, uz."""
    nrm = math.sqrt(1.0 + tx * tx + ty * ty)
    ux, uy, uz = tx / nrm, ty / nrm, 1.0 / nrm
    a = math.sqrt(1.0 + tx * tx)
    e1x, e1y, e1z = 1.0 / a, 0.0, -tx / a  # perpendicular to u
    e2x, e2y, e2z = uy * e1z - uz * e1y, uz * e1x - ux * e1z, ux * e1y - uy * e1x
    c, s = math.cos(th), math.sin(th)
    cp, sp = math.cos(ph), math.sin(ph)
    vx = c * ux + s * (cp * e1x + sp * e2x)
    vy = c * uy + s * (cp * e1y + sp * e2y)
    vz = c * uz + s * (cp * e1z + sp * e2z)
    if vz <= 1e-6:
        return tx, ty, vz
    return vx / vz, vy / vz, vz


@njit(cache=True)
def _two_body_decay(tx, ty, p, m_parent, m1, m2):
    """Parent (slopes, |p|) -> daughter 1 in the lab after an isotropic 2-body decay: tx, ty, p, pz."""
    ps = math.sqrt((m_parent ** 2 - (m1 + m2) ** 2) * (m_parent ** 2 - (m1 - m2) ** 2)) / (2.0 * m_parent)
    e1s = math.sqrt(ps * ps + m1 * m1)
    nrm = math.sqrt(1.0 + tx * tx + ty * ty)
    dx, dy, dz = tx / nrm, ty / nrm, 1.0 / nrm
    cth = 2.0 * np.random.random() - 1.0
    phi = 2.0 * math.pi * np.random.random()
    sth = math.sqrt(max(0.0, 1.0 - cth * cth))
    qx, qy, qz = ps * sth * math.cos(phi), ps * sth * math.sin(phi), ps * cth
    e = math.sqrt(p * p + m_parent * m_parent)
    gam, bet = e / m_parent, p / e
    ql = qx * dx + qy * dy + qz * dz
    pl = gam * (ql + bet * e1s)
    vx = qx + (pl - ql) * dx
    vy = qy + (pl - ql) * dy
    vz = qz + (pl - ql) * dz
    pn = math.sqrt(vx * vx + vy * vy + vz * vz)
    if vz <= 1e-6 * pn:
        return tx, ty, pn, -1.0
    return vx / vz, vy / vz, pn, vz


@njit(cache=True)
def _ctau_of(spec):
    if spec == 2:
        return CTAU_PI_MM
    if spec == 3:
        return CTAU_K_MM
    if spec == 1:
        return CTAU_MU_MM
    return 1e30


@njit(cache=True)
def _muon_region(x, y, z):
    """Muon-station region 1..4 of (x, y) at z, 0 outside the active area."""
    if abs(x) < MUON_HOLE[0] * z and abs(y) < MUON_HOLE[1] * z:
        return 0
    r = max(abs(x) / (MUON_R1_HALF[0] * z), abs(y) / (MUON_R1_HALF[1] * z))
    if r < 1.0:
        return 1
    if r < 2.0:
        return 2
    if r < 4.0:
        return 3
    if r < 8.0:
        return 4
    return 0


@njit(cache=True)
def _sim_particle(x, y, z, tx, ty, p, q, spec, velo, ut, tt, mu, rich):
    """Transport one particle through the detector, filling its hits.  Returns a flags word:
    bit 0 decayed in flight, bit 1 hadronic interaction, bit 2 stopped/absorbed before M5."""
    m = MASS_GEV[spec]
    ct_left = -_ctau_of(spec) * math.log(1.0 - np.random.random())
    flags = 0
    alive = True
    i = np.searchsorted(L_Z, z)
    nl = L_Z.shape[0]
    while alive and i < nl:
        zl = L_Z[i]
        # ---- advance to the layer (RK4 in the field, straight outside), decays and aperture on the way
        while z < zl and alive:
            if z >= FZ_HI or zl <= FZ_LO:
                h = zl - z
                rk = False
            elif z < FZ_LO:
                h = FZ_LO - z
                rk = False
            else:
                h = min(STEP_SIM_MM, zl - z)
                rk = True
            nrm = math.sqrt(1.0 + tx * tx + ty * ty)
            dct = h * nrm * m / p
            decay = dct >= ct_left
            if decay and not rk:
                h = ct_left * p / (m * nrm)
            if rk:
                x, y, tx, ty = _rk4(x, y, tx, ty, q / p, z, h)
            else:
                x += tx * h
                y += ty * h
            z += h
            ct_left -= dct
            if APERTURE_Z_MM[0] < z < APERTURE_Z_MM[1] and (abs(x) > 0.35 * z or abs(y) > 0.30 * z):
                alive = False
            if abs(tx) > 3.0 or abs(ty) > 3.0:
                alive = False
            if decay and alive:
                flags |= 1
                if spec == 2:
                    tx, ty, p, pz = _two_body_decay(tx, ty, p, m, MASS_GEV[1], 0.0)
                    spec = 1
                elif np.random.random() < BR_K_MUNU:
                    tx, ty, p, pz = _two_body_decay(tx, ty, p, m, MASS_GEV[1], 0.0)
                    spec = 1
                else:
                    tx, ty, p, pz = _two_body_decay(tx, ty, p, m, MASS_GEV[2], M_PI0_GEV)
                    spec = 2
                if pz <= 0.0:
                    alive = False
                m = MASS_GEV[spec]
                ct_left = -_ctau_of(spec) * math.log(1.0 - np.random.random())
        if not alive:
            break
        # ---- the layer: hits
        kind = L_KIND[i]
        k = L_IDX[i]
        in_sensor = True
        if kind == K_VELO:
            r = math.hypot(x, y)
            in_sensor = VELO_RMIN_MM < r < VELO_RMAX_MM
            if in_sensor and np.random.random() < VELO_EFF:
                velo[k, 0] = x + VELO_SIGMA_MM * np.random.standard_normal()
                velo[k, 1] = y + VELO_SIGMA_MM * np.random.standard_normal()
        elif kind == K_UT:
            if (abs(x) < UT_HALF_X_MM and abs(y) < UT_HALF_Y_MM and math.hypot(x, y) > UT_HOLE_R_MM
                    and np.random.random() < UT_EFF):
                a = L_STEREO[i]
                ut[k] = x * math.cos(a) + y * math.sin(a) + UT_SIGMA_MM * np.random.standard_normal()
        elif kind == K_T:
            if (abs(x) < T_HALF_X_MM and abs(y) < T_HALF_Y_MM and not (abs(x) < T_HOLE_MM and abs(y) < T_HOLE_MM)
                    and np.random.random() < T_EFF):
                a = L_STEREO[i]
                tt[k] = x * math.cos(a) + y * math.sin(a) + T_SIGMA_MM * np.random.standard_normal()
        elif kind == K_MUON:
            reg = _muon_region(x, y, zl)
            if reg > 0 and np.random.random() < MUON_EFF:
                sc = 2.0 ** (reg - 1)
                px_, py_ = MUON_PAD_R1_MM[k, 0] * sc, MUON_PAD_R1_MM[k, 1] * sc
                mu[k, 0] = (math.floor(x / px_) + 0.5) * px_
                mu[k, 1] = (math.floor(y / py_) + 0.5) * py_
        elif kind == K_RICH1 or kind == K_RICH2:
            j = 0 if kind == K_RICH1 else 1
            rich[j, 0] = 1.0
            rich[j, 1] = p
            rich[j, 2] = m
            rich[j, 3] = tx
            rich[j, 4] = ty
        # ---- the layer: material
        mat = L_MAT[i]
        if mat >= 0 and in_sensor:
            if kind == K_CALO and spec == 0:
                alive = False  # electromagnetic shower: the electron stops in the ECAL
                flags |= 4
                break
            nrm = math.sqrt(1.0 + tx * tx + ty * ty)
            path = L_THK[i] * nrm
            lf = HADRON_LAMBDA_FACTOR[spec]
            if lf > 0.0 and np.random.random() < 1.0 - math.exp(-path / (lf * MAT[mat, 4])):
                flags |= 2
                if zl < ECAL_Z_MM - 100.0 or np.random.random() >= LEAD_SURVIVE:
                    alive = False
                    flags |= 4
                    break
                p *= np.random.random()
                kick = -LEAD_PT_GEV * math.log(1.0 - np.random.random())
                tx, ty, uz = _rotate(tx, ty, min(kick / p, 1.2), 2.0 * math.pi * np.random.random())
                if uz <= 1e-6 or p < 0.05:
                    alive = False
                    flags |= 4
                    break
                nrm = math.sqrt(1.0 + tx * tx + ty * ty)
                path = L_THK[i] * nrm
            th0 = _highland(p, m, path / MAT[mat, 0])
            t1 = th0 * np.random.standard_normal()
            t2 = th0 * np.random.standard_normal()
            tx, ty, uz = _rotate(tx, ty, math.hypot(t1, t2), math.atan2(t2, t1))
            if uz <= 1e-6:
                alive = False
                break
            e = math.sqrt(p * p + m * m) - _dedx_mev_mm(mat, p, m) * path * 1e-3
            if spec == 0:  # bremsstrahlung: E'/E = exp(-Gamma(t / ln 2)) (Bethe-Heitler)
                t = path / MAT[mat, 0]
                e *= math.exp(-np.random.gamma(t / math.log(2.0), 1.0))
            if e <= m * 1.0001:
                alive = False
                flags |= 4
                break
            p = math.sqrt(e * e - m * m)
            if p < 0.05:
                alive = False
                flags |= 4
                break
        i += 1
    return flags


# ---------------------------------------------------------------- numba kernels: reconstruction


@njit(cache=True)
def _crosses(i, x, y):
    """Whether a particle at (x, y) crosses the material of layer i (VELO: only inside the sensors)."""
    if L_KIND[i] != K_VELO:
        return True
    r = math.hypot(x, y)
    return VELO_RMIN_MM < r < VELO_RMAX_MM


@njit(cache=True)
def _prop(st, z0, z1, m_hyp):
    """Fit propagator: the state (x, y, tx, ty, q/p) from z0 to z1 (either direction), with the mean energy
    loss of mass hypothesis m_hyp (0: none) of the layers at z0 <= z < z1 (a state at a layer is the state
    just before its material; VELO stations only inside their sensors).  Modifies st in place."""
    x, y, tx, ty, qop = st[0], st[1], st[2], st[3], st[4]
    if z1 > z0:
        i = np.searchsorted(L_Z, z0)  # first layer with L_Z >= z0
        z = z0
        while i < L_Z.shape[0] and L_Z[i] < z1:
            x, y, tx, ty = _transport(x, y, tx, ty, qop, z, L_Z[i], STEP_FIT_MM)
            z = L_Z[i]
            if m_hyp > 0.0 and L_MAT[i] >= 0 and qop != 0.0 and _crosses(i, x, y):
                p = 1.0 / abs(qop)
                path = L_THK[i] * math.sqrt(1.0 + tx * tx + ty * ty)
                e = math.sqrt(p * p + m_hyp * m_hyp) - _dedx_mev_mm(L_MAT[i], p, m_hyp) * path * 1e-3
                if e <= m_hyp * 1.001:
                    e = m_hyp * 1.001
                pn = math.sqrt(e * e - m_hyp * m_hyp)
                qop = math.copysign(1.0 / pn, qop)
            i += 1
        x, y, tx, ty = _transport(x, y, tx, ty, qop, z, z1, STEP_FIT_MM)
    elif z1 < z0:
        i = np.searchsorted(L_Z, z0) - 1  # last layer with L_Z < z0
        z = z0
        while i >= 0 and L_Z[i] >= z1:
            x, y, tx, ty = _transport(x, y, tx, ty, qop, z, L_Z[i], STEP_FIT_MM)
            z = L_Z[i]
            if m_hyp > 0.0 and L_MAT[i] >= 0 and qop != 0.0 and _crosses(i, x, y):
                p = 1.0 / abs(qop)
                path = L_THK[i] * math.sqrt(1.0 + tx * tx + ty * ty)
                e = math.sqrt(p * p + m_hyp * m_hyp) + _dedx_mev_mm(L_MAT[i], p, m_hyp) * path * 1e-3
                qop = math.copysign(1.0 / math.sqrt(e * e - m_hyp * m_hyp), qop)
            i -= 1
        x, y, tx, ty = _transport(x, y, tx, ty, qop, z, z1, STEP_FIT_MM)
    st[0], st[1], st[2], st[3], st[4] = x, y, tx, ty, qop


@njit(cache=True)
def _predict(st, mz, mc, ms, n, u, stx, sty):
    """Predicted measurements u = x cos a + y sin a at the (z-sorted) measurement planes, and slopes."""
    i0 = 0
    while i0 < n and mz[i0] < 0.0:
        i0 += 1
    cur = st.copy()
    zc = 0.0
    for i in range(i0, n):
        if mz[i] != zc:
            _prop(cur, zc, mz[i], MASS_GEV[2])
            zc = mz[i]
        u[i] = cur[0] * mc[i] + cur[1] * ms[i]
        stx[i] = cur[2]
        sty[i] = cur[3]
    cur = st.copy()
    zc = 0.0
    for i in range(i0 - 1, -1, -1):
        if mz[i] != zc:
            _prop(cur, zc, mz[i], MASS_GEV[2])
            zc = mz[i]
        u[i] = cur[0] * mc[i] + cur[1] * ms[i]
        stx[i] = cur[2]
        sty[i] = cur[3]


@njit(cache=True)
def _cholesky(a, n):
    """In-place lower Cholesky factor of the leading n x n block; False if not positive definite."""
    for j in range(n):
        s = a[j, j]
        for k in range(j):
            s -= a[j, k] * a[j, k]
        if s <= 0.0:
            return False
        d = math.sqrt(s)
        a[j, j] = d
        for i in range(j + 1, n):
            s = a[i, j]
            for k in range(j):
                s -= a[i, k] * a[j, k]
            a[i, j] = s / d
    for j in range(n):
        for i in range(j):
            a[i, j] = 0.0
    return True


@njit(cache=True)
def _forward_sub(lo, b, n):
    for i in range(n):
        s = b[i]
        for k in range(i):
            s -= lo[i, k] * b[k]
        b[i] = s / lo[i, i]


@njit(cache=True)
def _inv_spd(a):
    """Inverse of a small symmetric positive-definite matrix (copy); None-like NaN matrix if singular."""
    n = a.shape[0]
    lo = a.copy()
    out = np.full((n, n), np.nan)
    if not _cholesky(lo, n):
        return out, False
    inv_l = np.zeros((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = 1.0
        _forward_sub(lo, e, n)
        for i in range(n):
            inv_l[i, j] = e[i]
    for i in range(n):
        for j in range(n):
            s = 0.0
            for k in range(n):
                s += inv_l[k, i] * inv_l[k, j]
            out[i, j] = s
    return out, True


@njit(cache=True)
def _noise_cov(mz, mc, ms, msig, n, p, stx, sty, st, v):
    """Hit covariance: resolutions + multiple-scattering correlations (pion hypothesis at momentum p).
    VELO stations scatter only where the track (state st, straight in the VELO) crosses their sensors."""
    for i in range(n):
        for j in range(n):
            v[i, j] = 0.0
        v[i, i] = msig[i] * msig[i]
    m = MASS_GEV[2]
    zf, zl = mz[0], mz[n - 1]
    j0 = 0
    for k in range(SC_Z.shape[0]):
        zk = SC_Z[k]
        if zk < zf or zk >= zl:
            continue
        if SC_VELO[k]:
            rk = math.hypot(st[0] + st[2] * zk, st[1] + st[3] * zk)
            if rk <= VELO_RMIN_MM or rk >= VELO_RMAX_MM:
                continue
        while j0 < n and mz[j0] <= zk:
            j0 += 1
        if j0 >= n:
            break
        tx, ty = stx[j0], sty[j0]
        nrm2 = 1.0 + tx * tx + ty * ty
        th = _highland(p, m, SC_X0[k] * math.sqrt(nrm2))
        f = th * th * nrm2
        vxx, vyy, vxy = f * (1.0 + tx * tx), f * (1.0 + ty * ty), f * tx * ty
        for i in range(j0, n):
            ai = mz[i] - zk
            ci, si = mc[i] * ai, ms[i] * ai
            for j in range(i, n):
                aj = mz[j] - zk
                cj, sj = mc[j] * aj, ms[j] * aj
                v[i, j] += ci * cj * vxx + si * sj * vyy + (ci * sj + si * cj) * vxy
    for i in range(n):
        for j in range(i + 1, n):
            v[j, i] = v[i, j]


@njit(cache=True)
def _fit(mz, mv, mc, ms, msig, n, st, cov):
    """Global least-squares track fit (see the module docstring).  st: seed in, result out; cov: 5x5 out.
    Returns chi2 (negative if the fit failed)."""
    u0 = np.empty(n)
    u1 = np.empty(n)
    stx = np.empty(n)
    sty = np.empty(n)
    dtx = np.empty(n)
    dty = np.empty(n)
    h = np.empty((n, 5))
    v = np.empty((n, n))
    lo = np.empty((n, n))
    r = np.empty(n)
    hw = np.empty(n)
    p_v = -1.0
    amat = np.zeros((5, 5))
    bvec = np.zeros(5)
    ok = False
    for it in range(10):
        _predict(st, mz, mc, ms, n, u0, stx, sty)
        for c in range(5):
            if c == 0:
                for i in range(n):
                    h[i, 0] = mc[i]
                continue
            if c == 1:
                for i in range(n):
                    h[i, 1] = ms[i]
                continue
            eps = 1e-5 if c < 4 else 1e-4 * max(abs(st[4]), 0.05)
            s2 = st.copy()
            s2[c] += eps
            _predict(s2, mz, mc, ms, n, u1, dtx, dty)
            for i in range(n):
                h[i, c] = (u1[i] - u0[i]) / eps
        p_now = 1.0 / abs(st[4]) if st[4] != 0.0 else 5.0
        p_now = min(max(p_now, 0.3), 1000.0)
        if p_v < 0.0 or abs(p_now / p_v - 1.0) > 0.02:
            _noise_cov(mz, mc, ms, msig, n, p_now, stx, sty, st, v)
            for i in range(n):
                for j in range(n):
                    lo[i, j] = v[i, j]
            if not _cholesky(lo, n):
                return -1.0
            p_v = p_now
        for i in range(n):
            r[i] = mv[i] - u0[i]
        _forward_sub(lo, r, n)
        for a in range(5):
            bvec[a] = 0.0
            for b in range(5):
                amat[a, b] = 0.0
        hws = np.empty((n, 5))
        for c in range(5):
            for i in range(n):
                hw[i] = h[i, c]
            _forward_sub(lo, hw, n)
            for i in range(n):
                hws[i, c] = hw[i]
        for a in range(5):
            s = 0.0
            for i in range(n):
                s += hws[i, a] * r[i]
            bvec[a] = s
            for b in range(a, 5):
                s = 0.0
                for i in range(n):
                    s += hws[i, a] * hws[i, b]
                amat[a, b] = s
                amat[b, a] = s
        inv, good = _inv_spd(amat)
        if not good:
            return -1.0
        dlt = np.zeros(5)
        for a in range(5):
            s = 0.0
            for b in range(5):
                s += inv[a, b] * bvec[b]
            dlt[a] = s
        for a in range(5):
            st[a] += dlt[a]
        if not np.isfinite(st[4]) or abs(st[4]) > 5.0 or abs(st[2]) > 2.0 or abs(st[3]) > 2.0:
            return -1.0
        for a in range(5):
            for b in range(5):
                cov[a, b] = inv[a, b]
        if abs(dlt[4]) < 1e-4 * abs(st[4]) + 1e-9 and abs(dlt[2]) < 1e-7 and abs(dlt[3]) < 1e-7:
            ok = True
            break
    if not ok:
        return -1.0
    _predict(st, mz, mc, ms, n, u0, stx, sty)
    for i in range(n):
        r[i] = mv[i] - u0[i]
    _forward_sub(lo, r, n)
    chi2 = 0.0
    for i in range(n):
        chi2 += r[i] * r[i]
    return chi2


@njit(cache=True)
def _line_fit(z, v, n, zref):
    """Unweighted least-squares line v = a + b (z - zref); returns a, b."""
    sz = sv = szz = szv = 0.0
    for i in range(n):
        d = z[i] - zref
        sz += d
        sv += v[i]
        szz += d * d
        szv += d * v[i]
    det = n * szz - sz * sz
    if det <= 0.0:
        return np.nan, np.nan
    return (sv * szz - sz * szv) / det, (n * szv - sz * sv) / det


@njit(cache=True)
def _t_seed(tt):
    """Fit x = a + b dz + c dz^2, y = d + e dz (dz = z - 8600 mm) to the T hits; returns (a..e) or NaNs."""
    amat = np.zeros((5, 5))
    bvec = np.zeros(5)
    f = np.zeros(5)
    nh = 0
    for k in range(12):
        if np.isnan(tt[k]):
            continue
        zl = T_STATION_Z_MM[k // 4] + T_LAYER_OFFSETS_MM[k % 4]
        a = T_STEREO_RAD[k % 4]
        dz = (zl - 8600.0) * 1e-3
        c, s = math.cos(a), math.sin(a)
        f[0], f[1], f[2], f[3], f[4] = c, c * dz, c * dz * dz, s, s * dz
        for i in range(5):
            bvec[i] += f[i] * tt[k]
            for j in range(5):
                amat[i, j] += f[i] * f[j]
        nh += 1
    out = np.full(5, np.nan)
    if nh < 5:
        return out
    inv, good = _inv_spd(amat)
    if not good:
        return out
    for i in range(5):
        s = 0.0
        for j in range(5):
            s += inv[i, j] * bvec[j]
        out[i] = s
    out[1] *= 1e-3  # back to per-mm
    out[2] *= 1e-6
    out[4] *= 1e-3
    return out


@njit(cache=True)
def _geom_acceptance(x, y, z, tx, ty, qop):
    """Ideal trajectory (field, no material) crosses >= 3 VELO stations and >= 3 UT layers."""
    nv = 0
    for k in range(VELO_Z_MM.shape[0]):
        zs = VELO_Z_MM[k]
        if zs < z:
            continue
        xs, ys = x + tx * (zs - z), y + ty * (zs - z)
        r = math.hypot(xs, ys)
        if VELO_RMIN_MM < r < VELO_RMAX_MM:
            nv += 1
    if nv < 3:
        return False
    nu = 0
    xs, ys, sx, sy = x, y, tx, ty
    zc = z
    for k in range(4):
        xs, ys, sx, sy = _transport(xs, ys, sx, sy, qop, zc, UT_Z_MM[k], STEP_FIT_MM)
        zc = UT_Z_MM[k]
        if abs(xs) < UT_HALF_X_MM and abs(ys) < UT_HALF_Y_MM and math.hypot(xs, ys) > UT_HOLE_R_MM:
            nu += 1
    return nu >= 3


@njit(cache=True)
def _norm_cdf(x):
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@njit(cache=True)
def _rich_loglik(rich_state, n_minus_1, npe, sigma, window, bkg, tx_reco, ty_reco, p_reco, ll):
    """Simulate the photons of one radiator and add log L(h) for the 5 hypotheses to ll; returns n photons."""
    n = 1.0 + n_minus_1
    tmax = math.acos(1.0 / n)
    s2max = math.sin(tmax) ** 2
    # ---- photons of the true particle
    p, m, tx, ty = rich_state[1], rich_state[2], rich_state[3], rich_state[4]
    beta = p / math.sqrt(p * p + m * m)
    thetas = np.empty(512)
    nph = 0
    if n * beta > 1.0:
        th = math.acos(1.0 / (n * beta))
        n_emit = np.random.poisson(npe / RICH_DET_EFF * math.sin(th) ** 2 / s2max)
        dtx, dty = tx_reco - tx, ty_reco - ty
        for _ in range(n_emit):
            if np.random.random() >= RICH_DET_EFF:
                continue
            ph = 2.0 * math.pi * np.random.random()
            t = th + sigma * np.random.standard_normal() + dtx * math.cos(ph) + dty * math.sin(ph)
            if 0.0 < t < window and nph < 512:
                thetas[nph] = t
                nph += 1
    nb = np.random.poisson(bkg)
    for _ in range(nb):
        if nph < 512:
            thetas[nph] = window * np.random.random()
            nph += 1
    # ---- likelihoods at the reconstructed momentum
    norm = 1.0 / (math.sqrt(2.0 * math.pi) * sigma)
    for hyp in range(5):
        mh = MASS_GEV[hyp]
        bh = p_reco / math.sqrt(p_reco * p_reco + mh * mh)
        sig = 0.0
        th_h = 0.0
        if n * bh > 1.0:
            th_h = math.acos(1.0 / (n * bh))
            sig = npe * math.sin(th_h) ** 2 / s2max
        lsum = -(sig + bkg)
        for j in range(nph):
            d = (thetas[j] - th_h) / sigma
            lsum += math.log(sig * norm * math.exp(-0.5 * d * d) + bkg / window)
        ll[hyp] += lsum
    return nph


@njit(cache=True)
def _muon_response(st, p_reco, n_tracks, mu_hits, out):
    """Extrapolate to M2-M5, build the FOI, add background hits, evaluate isMuon and the muon DLL.
    out[0] = is_muon (0/1), out[1] = muon_dll, out[2] = extrapolation inside M2 and M5's active area (0/1)."""
    # ---- extrapolation and MS widths (muon hypothesis, mean losses), reach probability
    cur = st.copy()
    _prop(cur, 0.0, T_STATION_Z_MM[2] + 100.0, 0.0)
    zc = T_STATION_Z_MM[2] + 100.0
    xs = np.empty(4)
    ys = np.empty(4)
    for s in range(4):
        _prop(cur, zc, MUON_Z_MM[s], 0.0)
        zc = MUON_Z_MM[s]
        xs[s], ys[s] = cur[0], cur[1]
    tx, ty = cur[2], cur[3]
    m = MASS_GEV[1]
    e0 = math.sqrt(p_reco * p_reco + m * m)
    e = e0
    varx = np.zeros(4)
    vary = np.zeros(4)
    reach = np.zeros(4)
    nrm2 = 1.0 + tx * tx + ty * ty
    i = np.searchsorted(L_Z, T_STATION_Z_MM[2] + 100.0)
    s = 0
    while s < 4 and i < L_Z.shape[0]:
        if L_Z[i] >= MUON_Z_MM[s]:
            lost = e0 - e
            reach[s] = _norm_cdf((e0 - m - lost) / (0.1 * lost + 0.02))
            s += 1
            continue
        mat = L_MAT[i]
        if mat >= 0:
            pm = math.sqrt(max(e * e - m * m, 0.04))
            path = L_THK[i] * math.sqrt(nrm2)
            th = _highland(pm, m, path / MAT[mat, 0])
            f = th * th * nrm2
            for s2 in range(s, 4):
                d = MUON_Z_MM[s2] - L_Z[i]
                varx[s2] += f * (1.0 + tx * tx) * d * d
                vary[s2] += f * (1.0 + ty * ty) * d * d
            e -= _dedx_mev_mm(mat, pm, m) * path * 1e-3
        i += 1
    # ---- FOI, hits
    has = np.zeros(4, dtype=np.bool_)
    dll = 0.0
    for s in range(4):
        reg = _muon_region(xs[s], ys[s], MUON_Z_MM[s])
        sc = 2.0 ** (max(reg, 1) - 1)
        padx, pady = MUON_PAD_R1_MM[s, 0] * sc, MUON_PAD_R1_MM[s, 1] * sc
        sx = math.sqrt(varx[s] + padx * padx / 12.0)
        sy = math.sqrt(vary[s] + pady * pady / 12.0)
        fx, fy = 0.5 * padx + 3.0 * sx, 0.5 * pady + 3.0 * sy
        area = 4.0 * fx * fy
        r = max(math.hypot(xs[s], ys[s]), 300.0)
        rho = MUON_BKG_PER_MM2 * (1000.0 / r) ** 2 * n_tracks / 20.0
        mu_b = rho * area
        best = 1e30
        if reg > 0 and not np.isnan(mu_hits[s, 0]):
            dx, dy = mu_hits[s, 0] - xs[s], mu_hits[s, 1] - ys[s]
            if abs(dx) < fx and abs(dy) < fy:
                best = (dx / sx) ** 2 + (dy / sy) ** 2
        nb = np.random.poisson(mu_b)
        for _ in range(nb):
            dx = fx * (2.0 * np.random.random() - 1.0)
            dy = fy * (2.0 * np.random.random() - 1.0)
            d2 = (dx / sx) ** 2 + (dy / sy) ** 2
            if d2 < best:
                best = d2
        ps = reach[s] * MUON_EFF * (1.0 if reg > 0 else 0.0)
        q_non = min(mu_b + MUON_PT_PROB, 0.99)
        if best < 1e29:
            has[s] = True
            g = math.exp(-0.5 * best) / (2.0 * math.pi * sx * sy)
            l_mu = ps * g + (1.0 - ps) * (mu_b / area + 1e-12)
            l_non = q_non / area
        else:
            l_mu = 1.0 - ps + 1e-6
            l_non = 1.0 - q_non
        dll += math.log(l_mu) - math.log(l_non)
    if p_reco < 6.0:
        ism = has[0] and has[1]
    elif p_reco < 10.0:
        ism = has[0] and has[1] and (has[2] or has[3])
    else:
        ism = has[0] and has[1] and has[2] and has[3]
    out[0] = 1.0 if ism else 0.0
    out[1] = dll
    inside = _muon_region(xs[0], ys[0], MUON_Z_MM[0]) > 0 and _muon_region(xs[3], ys[3], MUON_Z_MM[3]) > 0
    out[2] = 1.0 if inside else 0.0


# output columns of the kernel
F_X, F_Y, F_TX, F_TY, F_QOP, F_CHI2, F_SX, F_SY, F_STX, F_STY, F_SQOP, F_CXTX, F_CYTY = range(13)
F_DLL_E, F_DLL_MU, F_DLL_K, F_DLL_P, F_MUDLL = range(13, 18)
NF = 18
I_ACC, I_TYPE, I_ISMU, I_NV, I_NUT, I_NT, I_NMU, I_NR1, I_NR2, I_FLAGS, I_MUACC = range(11)
NI = 11


@njit(cache=True)
def _reconstruct(x0, y0, z0, tx0, ty0, qop0, n_tracks, velo, ut, tt, mu, rich, outf, outi):
    """Acceptance, track type, fit, RICH and muon response of one simulated particle."""
    acc = _geom_acceptance(x0, y0, z0, tx0, ty0, qop0)
    outi[I_ACC] = 1 if acc else 0
    nv = 0
    for k in range(VELO_Z_MM.shape[0]):
        if not np.isnan(velo[k, 0]):
            nv += 1
    nut = 0
    for k in range(4):
        if not np.isnan(ut[k]):
            nut += 1
    nt = 0
    for k in range(12):
        if not np.isnan(tt[k]):
            nt += 1
    nmu = 0
    for k in range(4):
        if not np.isnan(mu[k, 0]):
            nmu += 1
    outi[I_NV], outi[I_NUT], outi[I_NT], outi[I_NMU] = nv, nut, nt, nmu
    has_v, has_u, has_t = nv >= 3, nut >= 3, nt >= 8
    ttype = 0
    if acc:
        if has_v and has_t:
            ttype = 1
        elif has_v and has_u:
            ttype = 2
        elif has_u and has_t:
            ttype = 3
    if ttype == 0:
        outi[I_TYPE] = 0
        return
    # ---- measurements (z-sorted)
    nmax = 2 * VELO_Z_MM.shape[0] + 16
    mz = np.empty(nmax)
    mv = np.empty(nmax)
    mc = np.empty(nmax)
    ms = np.empty(nmax)
    msig = np.empty(nmax)
    n = 0
    if ttype != 3:
        for k in range(VELO_Z_MM.shape[0]):
            if not np.isnan(velo[k, 0]):
                for c in range(2):
                    mz[n] = VELO_Z_MM[k]
                    mv[n] = velo[k, c]
                    mc[n] = 1.0 if c == 0 else 0.0
                    ms[n] = 0.0 if c == 0 else 1.0
                    msig[n] = VELO_SIGMA_MM
                    n += 1
    if has_u:
        for k in range(4):
            if not np.isnan(ut[k]):
                mz[n] = UT_Z_MM[k]
                mv[n] = ut[k]
                mc[n] = math.cos(UT_STEREO_RAD[k])
                ms[n] = math.sin(UT_STEREO_RAD[k])
                msig[n] = UT_SIGMA_MM
                n += 1
    if ttype != 2:
        for k in range(12):
            if not np.isnan(tt[k]):
                mz[n] = T_STATION_Z_MM[k // 4] + T_LAYER_OFFSETS_MM[k % 4]
                mv[n] = tt[k]
                mc[n] = math.cos(T_STEREO_RAD[k % 4])
                ms[n] = math.sin(T_STEREO_RAD[k % 4])
                msig[n] = T_SIGMA_MM
                n += 1
    # ---- seed
    st = np.zeros(5)
    if ttype != 3:
        zv = np.empty(VELO_Z_MM.shape[0])
        xv = np.empty(VELO_Z_MM.shape[0])
        yv = np.empty(VELO_Z_MM.shape[0])
        j = 0
        for k in range(VELO_Z_MM.shape[0]):
            if not np.isnan(velo[k, 0]):
                zv[j], xv[j], yv[j] = VELO_Z_MM[k], velo[k, 0], velo[k, 1]
                j += 1
        st[0], st[2] = _line_fit(zv, xv, j, 0.0)
        st[1], st[3] = _line_fit(zv, yv, j, 0.0)
    tseed = _t_seed(tt) if ttype != 2 else np.full(5, np.nan)
    if ttype == 3:
        if np.isnan(tseed[0]):
            outi[I_TYPE] = 0
            return
        st[1], st[3] = tseed[3] - tseed[4] * 8600.0, tseed[4]
        zu = np.empty(4)
        xu = np.empty(4)
        j = 0
        for k in range(4):
            if not np.isnan(ut[k]):
                yk = st[1] + st[3] * UT_Z_MM[k]
                zu[j] = UT_Z_MM[k]
                xu[j] = (ut[k] - yk * math.sin(UT_STEREO_RAD[k])) / math.cos(UT_STEREO_RAD[k])
                j += 1
        a, b = _line_fit(zu, xu, j, 0.0)
        st[0], st[2] = a, b
    if ttype != 2:
        if np.isnan(tseed[1]):
            outi[I_TYPE] = 0
            return
        bdl = MAG_BDL_TMM if ttype == 1 else 0.97 * MAG_BDL_TMM
        nrm = math.sqrt(1.0 + st[2] ** 2 + st[3] ** 2)
        st[4] = -(tseed[1] - st[2]) / (C_LIGHT * bdl * nrm * (1.0 + st[2] ** 2))
    else:
        st[4] = 0.0
    if not np.isfinite(st[0]) or not np.isfinite(st[2]) or not np.isfinite(st[4]):
        outi[I_TYPE] = 0
        return
    cov = np.zeros((5, 5))
    chi2 = _fit(mz, mv, mc, ms, msig, n, st, cov)
    if chi2 < 0.0 or chi2 / (n - 5) > CHI2NDOF_MAX:
        outi[I_TYPE] = 0
        return
    outi[I_TYPE] = ttype
    for a in range(5):
        outf[F_X + a] = st[a]
    outf[F_CHI2] = chi2 / (n - 5)
    outf[F_SX] = math.sqrt(cov[0, 0])
    outf[F_SY] = math.sqrt(cov[1, 1])
    outf[F_STX] = math.sqrt(cov[2, 2])
    outf[F_STY] = math.sqrt(cov[3, 3])
    outf[F_SQOP] = math.sqrt(cov[4, 4])
    outf[F_CXTX] = cov[0, 2] / (outf[F_SX] * outf[F_STX])
    outf[F_CYTY] = cov[1, 3] / (outf[F_SY] * outf[F_STY])
    p_reco = 1.0 / abs(st[4])
    # ---- RICH
    ll = np.zeros(5)
    nr1 = nr2 = 0
    if ttype != 3 and rich[0, 0] > 0.0:
        s1 = st.copy()
        _prop(s1, 0.0, RICH1_RECORD_Z_MM, MASS_GEV[2])
        th = math.hypot(s1[2], s1[3])
        if th > RICH1_ACC[0] and abs(s1[2]) < RICH1_ACC[1] and abs(s1[3]) < RICH1_ACC[2]:
            nr1 = _rich_loglik(rich[0], RICH1_N_MINUS_1, RICH1_NPE, RICH1_SIGMA_RAD, RICH1_WINDOW_RAD,
                               RICH1_BKG * n_tracks / 20.0, s1[2], s1[3], p_reco, ll)
    if ttype != 2 and rich[1, 0] > 0.0:
        s2 = st.copy()
        _prop(s2, 0.0, RICH2_RECORD_Z_MM, MASS_GEV[2])
        th = math.hypot(s2[2], s2[3])
        if th > RICH2_ACC[0] and abs(s2[2]) < RICH2_ACC[1] and abs(s2[3]) < RICH2_ACC[2]:
            nr2 = _rich_loglik(rich[1], RICH2_N_MINUS_1, RICH2_NPE, RICH2_SIGMA_RAD, RICH2_WINDOW_RAD,
                               RICH2_BKG * n_tracks / 20.0, s2[2], s2[3], p_reco, ll)
    outi[I_NR1], outi[I_NR2] = nr1, nr2
    outf[F_DLL_E] = ll[0] - ll[2]
    outf[F_DLL_MU] = ll[1] - ll[2]
    outf[F_DLL_K] = ll[3] - ll[2]
    outf[F_DLL_P] = ll[4] - ll[2]
    # ---- muon system
    outf[F_MUDLL] = 0.0
    outi[I_ISMU] = 0
    if ttype != 2 and p_reco > P_MUON_MIN_GEV:
        res = np.zeros(3)
        _muon_response(st, p_reco, n_tracks, mu, res)
        outi[I_ISMU] = int(res[0])
        outf[F_MUDLL] = res[1]
        outi[I_MUACC] = int(res[2])


@njit(cache=True)
def _kernel(vx, vy, vz, px, py, pz, charge, spec, n_tracks, seed):
    np.random.seed(seed)
    n = vx.shape[0]
    outf = np.full((n, NF), np.nan)
    outi = np.zeros((n, NI), dtype=np.int64)
    nvs = VELO_Z_MM.shape[0]
    for i in range(n):
        velo = np.full((nvs, 2), np.nan)
        ut = np.full(4, np.nan)
        tt = np.full(12, np.nan)
        mu = np.full((4, 2), np.nan)
        rich = np.zeros((2, 5))
        tx, ty = px[i] / pz[i], py[i] / pz[i]
        p = math.sqrt(px[i] ** 2 + py[i] ** 2 + pz[i] ** 2)
        q = float(charge[i])
        outi[i, I_FLAGS] = _sim_particle(vx[i], vy[i], vz[i], tx, ty, p, q, spec[i], velo, ut, tt, mu, rich)
        _reconstruct(vx[i], vy[i], vz[i], tx, ty, q / p, n_tracks[i], velo, ut, tt, mu, rich, outf[i], outi[i])
    return outf, outi


# ---------------------------------------------------------------- public API

REQUIRED = ("pid", "charge", "vx_mm", "vy_mm", "vz_mm", "px_gev", "py_gev", "pz_gev", "n_tracks")
STATE = ("x_mm", "y_mm", "tx", "ty", "qop")
DERIVED = ("p_reco_gev", "pt_reco_gev", "eta_reco", "phi_reco")
COVARIANCE = ("sigma_x_mm", "sigma_y_mm", "sigma_tx", "sigma_ty", "sigma_qop", "corr_x_tx", "corr_y_ty")
RICH = ("rich_dll_e", "rich_dll_mu", "rich_dll_k", "rich_dll_p")
GPID = ("pid_e", "pid_mu", "pid_k", "pid_p")
DEBUG = ("n_velo_hits", "n_ut_hits", "n_t_hits", "n_muon_hits", "n_rich1_photons", "n_rich2_photons",
         "decayed_in_flight", "hadronic_interaction", "in_muon_acceptance")
COLUMNS = (("in_acceptance", "track_type") + STATE + DERIVED + ("chi2ndof",) + COVARIANCE + RICH
           + ("is_muon", "muon_dll") + GPID + DEBUG)


def _check(truth: pd.DataFrame, seed) -> None:
    if not isinstance(truth, pd.DataFrame):
        raise SimError(f"detector.simulate: truth must be a pandas DataFrame, got {type(truth).__name__}")
    missing = [c for c in REQUIRED if c not in truth.columns]
    if missing:
        raise SimError(f"detector.simulate: the particle table lacks column(s) {', '.join(missing)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 32:
        raise SimError(f"detector.simulate: seed must be an integer in [0, 2**32), got {seed!r}")
    num = truth[["vx_mm", "vy_mm", "vz_mm", "px_gev", "py_gev", "pz_gev"]].to_numpy(np.float64)
    if not np.isfinite(num).all():
        raise SimError("detector.simulate: vertex and momentum columns must be finite")
    if (num[:, 5] <= 0).any():
        raise SimError("detector.simulate: only forward particles (pz_gev > 0) can be simulated")
    apid = np.abs(truth["pid"].to_numpy())
    bad = ~np.isin(apid, SPECIES_PDG)
    if bad.any():
        raise SimError(f"detector.simulate: unsupported pid {int(truth['pid'].to_numpy()[bad][0])} "
                       f"(supported: +-{', +-'.join(str(s) for s in SPECIES_PDG)})")
    if not np.isin(truth["charge"].to_numpy(), (-1, 1)).all():
        raise SimError("detector.simulate: charge must be +1 or -1")


def simulate(truth: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The detailed simulation of ``truth`` (a generator table): a copy with :data:`COLUMNS` added, same
    row order and index.  NaN where a value is not defined (not reconstructed); RICH DLLs are 0 for
    reconstructed tracks no radiator saw, ``muon_dll`` 0 for reconstructed tracks without muon info."""
    _check(truth, seed)
    apid = np.abs(truth["pid"].to_numpy())
    spec = np.searchsorted(SPECIES_PDG, apid).astype(np.int64)
    f = lambda c: np.ascontiguousarray(truth[c].to_numpy(np.float64))  # noqa: E731
    outf, outi = _kernel(f("vx_mm"), f("vy_mm"), f("vz_mm"), f("px_gev"), f("py_gev"), f("pz_gev"),
                         np.ascontiguousarray(truth["charge"].to_numpy(np.int64)), spec,
                         np.ascontiguousarray(truth["n_tracks"].to_numpy(np.float64)), int(seed))
    out = {}
    out["in_acceptance"] = outi[:, I_ACC].astype(bool)
    out["track_type"] = outi[:, I_TYPE].astype(np.int8)
    for name, col in zip(STATE, (F_X, F_Y, F_TX, F_TY, F_QOP)):
        out[name] = outf[:, col]
    tx, ty, qop = outf[:, F_TX], outf[:, F_TY], outf[:, F_QOP]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 1.0 / np.abs(qop)
        t = np.hypot(tx, ty)
        out["p_reco_gev"] = p
        out["pt_reco_gev"] = p * t / np.sqrt(1.0 + t * t)
        out["eta_reco"] = np.arcsinh(1.0 / t)
    out["phi_reco"] = np.arctan2(ty, tx)
    out["chi2ndof"] = outf[:, F_CHI2]
    for name, col in zip(COVARIANCE, range(F_SX, F_CYTY + 1)):
        out[name] = outf[:, col]
    for name, col in zip(RICH, (F_DLL_E, F_DLL_MU, F_DLL_K, F_DLL_P)):
        out[name] = outf[:, col]
    out["is_muon"] = outi[:, I_ISMU].astype(bool)
    out["muon_dll"] = outf[:, F_MUDLL]
    out["pid_e"] = outf[:, F_DLL_E]
    out["pid_mu"] = outf[:, F_DLL_MU] + outf[:, F_MUDLL]
    out["pid_k"] = outf[:, F_DLL_K]
    out["pid_p"] = outf[:, F_DLL_P]
    for name, col in zip(DEBUG[:6], (I_NV, I_NUT, I_NT, I_NMU, I_NR1, I_NR2)):
        out[name] = outi[:, col].astype(np.int16)
    out["decayed_in_flight"] = (outi[:, I_FLAGS] & 1).astype(bool)
    out["hadronic_interaction"] = (outi[:, I_FLAGS] & 2).astype(bool)
    out["in_muon_acceptance"] = outi[:, I_MUACC].astype(bool)
    det = pd.DataFrame(out, index=truth.index)
    return pd.concat([truth.drop(columns=[c for c in COLUMNS if c in truth.columns]), det], axis=1)


def cost_per_event(n_events: int = 200, seed: int = 0, mean_gun: float = 20.0) -> dict:
    """Time :func:`simulate` on ``n_events`` generated events after a warm-up call (numba compilation):
    seconds per event and per particle, plus the sample sizes."""
    from models.lamarr import generator

    if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events < 1:
        raise SimError(f"cost_per_event: n_events must be a positive integer, got {n_events!r}")
    simulate(generator.generate(2, seed=seed + 1, mean_gun=mean_gun), seed=seed)  # warm-up / compile
    truth = generator.generate(n_events, seed=seed, mean_gun=mean_gun)
    t0 = time.perf_counter()
    simulate(truth, seed=seed)
    dt = time.perf_counter() - t0
    return {"n_events": int(n_events), "n_particles": int(len(truth)), "seconds": dt,
            "seconds_per_event": dt / n_events, "seconds_per_particle": dt / max(len(truth), 1)}
