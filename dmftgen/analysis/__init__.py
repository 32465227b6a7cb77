"""Analysis behind ``dmftgen compare``: statistics of the verdict (``stats``), the verdict with its
error budget and hints (``verdict``), assumption checks (``diagnostics``) and the figure
(``figure``)."""
