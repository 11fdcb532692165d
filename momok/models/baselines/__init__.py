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
* :mod:`~momok.models.baselines.rsme`: ``rsme`` (RSME, Wang et al. 2021: ComplEx over structure/image
  embeddings plus a forget-gated visual similarity);
* :mod:`~momok.models.baselines.mmkrl`: ``mmkrl`` (MMKRL, Lu et al. 2022: TransE energies across a structural
  and a multi-modal space, knowledge alignment, adversarial perturbations);
* :mod:`~momok.models.baselines.transae`: ``transae`` (TransAE, Wang et al. 2019: TransE over the codes of a
  multi-modal autoencoder);
* :mod:`~momok.models.baselines.vista`: ``vista`` (VISTA, Lee et al. 2023: transformer encoders of entity
  and relation tokens, a [MASK] decoder);
* :mod:`~momok.models.baselines.otkge`: ``otkge`` (OTKGE, Cao et al. 2022: optimal-transport mapping of the
  modality features into the structural space, fusion, ComplEx);
* :mod:`~momok.models.baselines.qeb`: ``qeb`` (QEB of TIVA-KG, Wang et al. 2023: ten TransE energies over
  structural and multimodal embeddings);
* :mod:`~momok.models.baselines.vbkgc`: ``vbkgc`` (VBKGC, Zhang and Zhang 2022: structural and fused
  multimodal embeddings, twins negative sampling).
"""

from momok.models.baselines import (  # noqa: F401  (registration side effects)
    adamf,
    imf,
    kge,
    mmkrl,
    mose,
    otkge,
    qeb,
    rsme,
    tbkgc,
    transae,
    vbkgc,
    vista,
)
