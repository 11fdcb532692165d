"""Baselines of Table 2 and Figure 3; importing this package registers every one of them.

* :mod:`~momok.models.baselines.kge`: uni-modal ``transe``, ``distmult``, ``complex``, ``rotate``, ``pairre``
  (PyKEEN interactions);
* :mod:`~momok.models.baselines.tbkgc`: ``tbkgc`` (Mousselly-Sergieh et al. 2018) and ``ikrl`` (Xie et al. 2017,
  as a TBKGC variant);
* :mod:`~momok.models.baselines.adamf`: ``adamf`` (AdaMF-MAT, Zhang et al. 2024);
* :mod:`~momok.models.baselines.mose`: ``mose`` (MoSE, Zhao et al. 2022: modality-split ComplEx scorers,
  average, boosting and meta-learner ensembles fit on validation);
* :mod:`~momok.models.baselines.imf`: ``imf`` (IMF, Li et al. 2023: bilinear fusion, contrastive loss,
  TuckER decoders per modality, decision fusion);
* :mod:`~momok.models.baselines.otkge`: ``otkge`` (OTKGE, Cao et al. 2022: optimal-transport mapping of the
  modality features into the structural space, fusion, ComplEx);
* :mod:`~momok.models.baselines.qeb`: ``qeb`` (QEB of TIVA-KG, Wang et al. 2023: ten TransE energies over
  structural and multimodal embeddings);
* :mod:`~momok.models.baselines.vbkgc`: ``vbkgc`` (VBKGC, Zhang and Zhang 2022: structural and fused
  multimodal embeddings, twins negative sampling).
"""

from momok.models.baselines import adamf, imf, kge, mose, otkge, qeb, tbkgc, vbkgc  # noqa: F401  (registration side effects)
