"""Reading data: alliance ratings (``alliance``), files (``files``), instruments
(``scales``), PSQ self-report and 3RS observer codes (``reported``)."""
