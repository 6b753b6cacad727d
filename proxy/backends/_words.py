"""Vocabulary of the synthetic backend: what M&A data rooms are called and how they are laid out.

A due-diligence index is numbered by section ("1 Corporate", "1.2 Minutes"); documents carry
the index number of their folder. Owners live at example.com, a domain reserved for examples.
"""

from __future__ import annotations

CODE_NAMES = (
    "Falcon", "Osprey", "Kestrel", "Merlin", "Harrier", "Condor", "Heron", "Kingfisher",
    "Albatross", "Peregrine", "Raven", "Swift", "Phoenix", "Griffin", "Pegasus", "Orion",
    "Sirius", "Vega", "Altair", "Rigel", "Polaris", "Aurora", "Zenith", "Meridian",
    "Everest", "Matterhorn", "Kilimanjaro", "Denali", "Aconcagua", "Elbrus", "Eiger", "Fuji",
    "Sapphire", "Emerald", "Onyx", "Topaz", "Garnet", "Obsidian", "Jade", "Quartz",
    "Alpha", "Delta", "Sigma", "Omega", "Atlas", "Titan", "Helios", "Hermes", "Apollo",
    "Neptune", "Mercury", "Jupiter", "Saturn", "Cobalt", "Indigo", "Crimson", "Amber",
    "Cedar", "Juniper", "Sequoia", "Willow", "Magnolia", "Aspen", "Redwood", "Lotus",
    "Tiger", "Panther", "Lynx", "Jaguar", "Cheetah", "Bison", "Stallion", "Mustang",
    "Thames", "Danube", "Rhine", "Seine", "Tagus", "Volga", "Loire", "Elbe",
)

DEAL_SUFFIXES = (
    "", "", "", "", " – Sell-side", " – Buy-side", " (Carve-out)", " II", " Refinancing",
    " – Vendor DD", " Phase 2", " – Bidder Q&A",
)

OWNERS = (
    ("Anna Schmidt", "anna.schmidt"), ("James O'Connor", "james.oconnor"),
    ("Sophie Martin", "sophie.martin"), ("Luca Rossi", "luca.rossi"),
    ("Emma Johansson", "emma.johansson"), ("Daniel Kowalski", "daniel.kowalski"),
    ("Priya Natarajan", "priya.natarajan"), ("Mateo García", "mateo.garcia"),
    ("Chloé Dubois", "chloe.dubois"), ("Henrik Nielsen", "henrik.nielsen"),
    ("Aiko Tanaka", "aiko.tanaka"), ("Olivia Brown", "olivia.brown"),
    ("Jonas Weber", "jonas.weber"), ("Fatima Al-Sayed", "fatima.alsayed"),
)

# (section title, sub-section titles, document titles typical of the section)
SECTIONS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("Corporate",
     ("Articles of Association", "Minutes", "Shareholder Register", "Group Structure",
      "Powers of Attorney", "Commercial Register Extracts"),
     ("Board Minutes", "Shareholder Resolution", "Articles of Association", "Group Chart",
      "Register Extract", "Power of Attorney", "Circular Resolution")),
    ("Financial",
     ("Audited Accounts", "Management Accounts", "Budget and Forecasts", "Debt Facilities",
      "Working Capital", "Auditor Letters"),
     ("Audited Financial Statements", "Management Accounts", "Budget", "Cash Flow Forecast",
      "Facility Agreement", "Trial Balance", "Net Debt Bridge", "Management Letter")),
    ("Tax",
     ("Corporate Income Tax", "VAT", "Transfer Pricing", "Tax Audits", "Tax Rulings"),
     ("Tax Return", "Tax Assessment", "VAT Return", "Transfer Pricing Report",
      "Tax Audit Report", "Advance Ruling")),
    ("Legal",
     ("Litigation", "Regulatory", "Permits and Licences", "Data Protection", "Compliance"),
     ("Statement of Claim", "Settlement Agreement", "Legal Opinion", "Permit",
      "Regulator Correspondence", "Data Processing Agreement", "Compliance Policy")),
    ("Commercial Contracts",
     ("Customer Agreements", "Supplier Agreements", "Distribution", "Framework Agreements",
      "Joint Ventures"),
     ("Master Services Agreement", "Supply Agreement", "Distribution Agreement",
      "Framework Agreement", "Amendment", "Purchase Order Terms", "NDA")),
    ("Employees",
     ("Employment Contracts", "Pension Schemes", "Incentive Plans", "Works Council",
      "Headcount"),
     ("Employment Contract", "Pension Plan Rules", "LTIP Rules", "Works Agreement",
      "Headcount Report", "Bonus Letter")),
    ("Real Estate",
     ("Title Deeds", "Leases", "Environmental Reports", "Facility Management"),
     ("Lease Agreement", "Land Register Extract", "Phase I Environmental Report",
      "Floor Plan", "Service Charge Statement")),
    ("Intellectual Property",
     ("Patents", "Trademarks", "Software Licences", "Domain Names", "R&D Agreements"),
     ("Patent Certificate", "Trademark Registration", "Licence Agreement",
      "Domain Portfolio", "IP Assignment", "Invention Disclosure")),
    ("IT and Cyber",
     ("Systems Overview", "Security Policies", "Incident Reports", "Outsourcing"),
     ("IT Landscape", "Information Security Policy", "Penetration Test Report",
      "Incident Report", "Outsourcing Agreement")),
    ("Insurance",
     ("Policies", "Claims", "Broker Reports"),
     ("Insurance Policy", "Claims History", "Broker Report", "Certificate of Insurance")),
    ("ESG",
     ("Environmental", "Social", "Governance"),
     ("Sustainability Report", "Emissions Inventory", "Supplier Code of Conduct",
      "Whistleblowing Policy")),
    ("Q&A",
     ("Buyer Questions", "Seller Answers", "Expert Sessions"),
     ("Q&A Log", "Response", "Expert Session Notes", "Follow-up Request")),
)

DEEP_FOLDERS = (
    "FY2019", "FY2020", "FY2021", "FY2022", "FY2023", "FY2024", "Q1", "Q2", "Q3", "Q4",
    "Signed Copies", "Drafts", "Archive", "Correspondence", "Schedules", "Annexes",
    "Board Meetings", "Germany", "France", "United Kingdom", "Spain", "Poland", "Subsidiaries",
    "Historic", "Superseded", "Translations", "Scans", "Customer A-F", "Customer G-M",
    "Customer N-Z", "Top 20 Suppliers", "Site Munich", "Site Lyon", "Site Leeds",
)

ROOT_FILES = ("Data Room Index.pdf", "Rules of Procedure.pdf", "Process Letter.pdf")

# extension, magic bytes at the start of the file, relative weight among ordinary documents
DOCUMENT_TYPES = (
    (".pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", 50),
    (".docx", b"PK\x03\x04\x14\x00\x06\x00", 15),
    (".xlsx", b"PK\x03\x04\x14\x00\x06\x00", 15),
    (".msg", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 8),
    (".pptx", b"PK\x03\x04\x14\x00\x06\x00", 5),
    (".jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", 4),
    (".csv", b"id;name;amount\n", 3),
)

SCAN_TYPES = (
    (".pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"),
    (".tif", b"II*\x00"),
    (".zip", b"PK\x03\x04\x14\x00\x00\x00"),
)

SCAN_TITLES = ("Scan", "Scanned Deed", "Signed Original", "Archive Export", "Data Tape")
